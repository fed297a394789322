"""Train a built model into a run folder: the experiment, the run, resume, devices, launch, both loops and the callbacks."""
