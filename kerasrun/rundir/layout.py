"""The names of a run folder's files and folders: one constant each, the one place they are spelled."""

from __future__ import annotations

RUN_FILE = "run.json"  # status and facts of the run, signed (rundir.record)
LOCK_FILE = ".lock"  # held (flock) by the process training in the folder
CONFIG_FILE = "config.yaml"  # the resolved config the run trained with
HISTORY_FILE = "history.json"  # per-epoch metrics, rewritten after every epoch
METRICS_FILE = "metrics.json"  # the final test (or validation) metrics
MODEL_FILE = "model.keras"  # the trained model, loaded with Keras safe_mode
SUMMARY_FILE = "summary.txt"  # model.summary()
CLASSES_FILE = "classes.json"  # class names of a folder source, in label order
PREDICTIONS_FILE = "predictions.json"  # targets and predictions of the first test samples
CURVES_FILE = "curves.png"  # learning curves drawn at the end of training (output.curves)
CHECKPOINT_DIR = "checkpoints"  # epoch-N.npz files (rundir.checkpoints)
CACHE_DIR = "cache"  # a streamed source's decoded rows (data.cache: file)
EXPORT_DIR = "export"  # `kerasrun export` artifacts, by default (saved_model/, model.tflite, model.onnx)
TENSORBOARD_DIR = "tensorboard"  # train/ and validation/ event files, as Keras lays them out
MLFLOW_FILE = "mlflow.json"  # which MLflow run this folder logs to, so `kerasrun resume` continues that run
SWEEP_FILE = "sweep.json"  # marks a sweep folder, whose trial run folders sit beside it
WORKER_LOGS = "workers"  # N.log: each worker's output, when `kerasrun launch` started them
