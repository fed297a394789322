"""`kerasrun sweep`: many trainings of one config with different `--set` values, as one Optuna study in a storage.

space.py parses the search space and plans trials (no TensorFlow); search.py checks the plan and makes
the scheduler's commands; metric.py checks `--metric` against a trial's compiled model and decides
`--mode auto`; study.py keeps the study (storage, queue, dead processes' trials); work.py makes or
joins a sweep and trains the trials a process takes; trial.py runs (or resumes) one trial as
`kerasrun train --set …` would; bayes.py is Optuna's sampler and pruner; processes.py and worker.py
are `--jobs J`; record.py and summary.py are sweep.json and its text; collect.py builds sweep.json
from trials a scheduler ran.
"""
