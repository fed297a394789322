"""`kerasrun sweep`: many trainings of one config with different `--set` values.

space.py parses the search space and plans trials (no TensorFlow), record.py keeps sweep.json,
trial.py runs one trial as `kerasrun train --set …` would, search.py runs the trials in this process,
workers.py in worker processes, bayes.py through Optuna.
"""
