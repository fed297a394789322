"""`output.mlflow`: log a run to an MLflow tracking store with MLflow's own client.

What goes there: the resolved config as params (dotted keys), every epoch's metrics (step = the
epoch number history.json gives), the test metrics (`test_` + name), the final status (run.json's,
as MLflow names it), the run folder's records and model.keras as artifacts.

The store is opened before the run folder exists: an unusable store (bad URI, unwritable folder,
MLflow refusing a file store, a server that does not answer) is a config error, exit 2, nothing
written. Once training runs, MLflow can only cost its logging, never the run: the first failure is
reported on stderr once and logging stops; the run goes on and its folder is the same as without MLflow.

MLflow's HTTP client retries 7 times with backoff and waits 120 s per request by default: minutes
of a silent hang for a server that is down. kerasrun opens a server store with a short timeout and
no retries, and logs to it with a shorter timeout and fewer retries than MLflow's defaults; the
`MLFLOW_HTTP_REQUEST_*` variables a user sets win over both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kerasrun._tf import keras
from kerasrun.config.resolved import absolute_tracking_uri, resolved_dict
from kerasrun.config.schema import Config
from kerasrun.errors import ConfigError, first_line
from kerasrun.rundir.io import RunFileError, is_finite, read_json, write_json_atomic
from kerasrun.rundir.layout import (
    CLASSES_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MLFLOW_FILE,
    MODEL_FILE,
    RUN_FILE,
    SUMMARY_FILE,
)

# kerasrun's run status → MLflow's RunStatus name.
STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "failed": "FAILED", "diverged": "FAILED", "crashed": "FAILED"}
ARTIFACTS = (CONFIG_FILE, HISTORY_FILE, METRICS_FILE, RUN_FILE, SUMMARY_FILE, CLASSES_FILE, CURVES_FILE)
BATCH = 100  # MLflow's log_batch takes at most 100 params (and 1000 metrics) per call
MAX_PARAM = 6000  # MLflow's limit on a param value's length
UNSAFE_KEY = re.compile(r"[^\w\-. /]")  # MLflow accepts letters, digits, _ - . space and / in keys
CONNECT_TIMEOUT = 5.0  # seconds to reach a tracking server before training: a server on the network answers in milliseconds
# Opening the store (before the run folder): one try, a short wait. A server that is down is a config error at once.
OPENING_HTTP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
# Logging while training: a slow server may cost this much per call, once (logging stops at the first failure).
LOGGING_HTTP = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """{dotted.key: text} for every leaf of the config; a list of plain values stays one JSON param."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = list(value.items())
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        text = value if isinstance(value, str) else json.dumps(value)
        return {prefix: text if len(text) <= MAX_PARAM else text[: MAX_PARAM - 1] + "…"}
    out: dict[str, str] = {}
    for key, child in items:
        out.update(flatten(child, f"{prefix}.{UNSAFE_KEY.sub('_', str(key))}" if prefix else UNSAFE_KEY.sub("_", str(key))))
    return out


def store_problem(config: Config, message: str, server: bool = False) -> ConfigError:
    """An MLflow store that can't be used, located at output.mlflow."""
    hint = "for a local store use e.g. tracking_uri: sqlite:///mlflow.db (needs sqlalchemy and alembic) or file:mlruns"
    if server:
        hint = "start the tracking server (mlflow server --port PORT) or correct output.mlflow.tracking_uri; " + hint
    if "MLFLOW_ALLOW_FILE_STORE" in message:
        hint = "MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true is set; or use sqlite:///mlflow.db"
    return ConfigError(config.problem(("output", "mlflow"), f"the MLflow tracking store can't be used: {message}", hint))


@contextlib.contextmanager
def http_settings(values: dict[str, str]) -> Iterator[None]:
    """MLflow's HTTP settings set to `values` inside the block, except those the user set; as they were after it."""
    chosen = {name: value for name, value in values.items() if name not in os.environ}
    os.environ.update(chosen)
    try:
        yield
    finally:
        for name in chosen:
            os.environ.pop(name, None)


def unreachable(uri: str | None) -> str | None:
    """Why an http(s) tracking server cannot be reached (a TCP connect within CONNECT_TIMEOUT), or None when it can or isn't one."""
    parts = urlsplit(uri or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port that is no number, or out of range
        return str(exc)
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT):
            return None
    except TimeoutError:
        return f"no answer from {parts.hostname}:{port} within {CONNECT_TIMEOUT:.0f} s"
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"


def find_or_create_experiment(client: Any, name: str) -> str:
    """The id of experiment `name`, created when the store has none by that name.

    Two processes may both find none and both create it (the workers of a run once did): the store
    refuses the second (RESOURCE_ALREADY_EXISTS, or the database's unique constraint), which then
    reads the experiment the first one made.
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:
        found = client.get_experiment_by_name(name)
        if found is None:  # not a lost race: the store's own failure
            raise
        return str(found.experiment_id)


def open_tracker(config: Config, is_chief: bool) -> MlflowTracker | None:
    """output.mlflow's tracker, opened by the chief only: one MLflow run per kerasrun run, however many workers train it."""
    if config.output.mlflow is None or not is_chief:
        return None
    return MlflowTracker(config)


class MlflowTracker:
    """One kerasrun run's MLflow run: opened before the folder exists, then logged to by a Keras callback."""

    def __init__(self, config: Config) -> None:
        """Open the store and find or create the experiment; ConfigError (exit 2) when the store is unusable."""
        from mlflow.tracking import MlflowClient

        spec = config.output.mlflow
        assert spec is not None  # only made for output.mlflow
        self.config = config
        self.uri = absolute_tracking_uri(config, spec.tracking_uri) if spec.tracking_uri else None
        self.run_id: str | None = None
        self.failed = False
        if (why := unreachable(self.uri or os.environ.get("MLFLOW_TRACKING_URI"))) is not None:
            raise store_problem(config, why, server=True)
        try:
            with http_settings(OPENING_HTTP):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id = find_or_create_experiment(self.client, spec.experiment or config.name)
        except Exception as exc:  # MlflowException, OSError, a driver's own errors: the store is unusable either way
            raise store_problem(config, first_line(exc)) from None
        for name, value in LOGGING_HTTP.items():  # for the rest of the process: the callbacks log from inside training
            os.environ.setdefault(name, value)

    def start(self, run_dir: Path, resumed: bool) -> None:
        """Create the MLflow run (or, on resume, reopen the folder's own) and log the resolved config as params."""
        run_dir = Path(run_dir)
        link = run_dir / MLFLOW_FILE
        if resumed and link.is_file():
            try:
                known = read_json(link)
            except RunFileError:
                known = {}
            if isinstance(known, dict) and known.get("tracking_uri") == self.client.tracking_uri and isinstance(known.get("run_id"), str):
                self.safely(self.client.update_run, known["run_id"], "RUNNING")
                if not self.failed:
                    self.run_id = known["run_id"]
                return  # params were logged when the run began (MLflow params can't change)
        spec = self.config.output.mlflow
        assert spec is not None
        tags = {"kerasrun.run_dir": str(run_dir.resolve()), "kerasrun.name": self.config.name}
        run = self.safely(self.client.create_run, self.experiment_id, run_name=spec.run_name or run_dir.name, tags=tags)
        if run is None:
            return
        self.run_id = run.info.run_id
        self.safely(write_json_atomic, link, {"tracking_uri": self.client.tracking_uri, "run_id": self.run_id})
        from mlflow.entities import Param

        params = [Param(key, value) for key, value in flatten(resolved_dict(self.config)).items()]
        for begin in range(0, len(params), BATCH):
            self.safely(self.client.log_batch, self.run_id, params=params[begin : begin + BATCH])

    def log_metrics(self, values: dict[str, Any], step: int) -> None:
        """Log numbers at `step` (at most 1000 per call, MLflow's limit)."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in values.items() if isinstance(value, (int, float))]
        for begin in range(0, len(metrics), 1000):
            self.safely(self.client.log_batch, self.run_id, metrics=metrics[begin : begin + 1000])

    def end(self, run_dir: Path) -> None:
        """Log the test metrics, the run folder's records and model, and the final status from run.json."""
        if self.run_id is None:
            return
        run_dir = Path(run_dir)
        try:
            status = str(read_json(run_dir / RUN_FILE).get("status"))
        except (RunFileError, AttributeError):
            status = "failed"
        metrics_file = run_dir / METRICS_FILE
        if metrics_file.is_file() and status == "completed":
            try:
                test = read_json(metrics_file)
            except RunFileError:
                test = {}
            self.log_metrics({f"test_{key}": value for key, value in test.items()}, 0)
        spec = self.config.output.mlflow
        names = [*ARTIFACTS, MODEL_FILE] if spec is not None and spec.log_model else list(ARTIFACTS)
        for name in names:
            if (run_dir / name).is_file():
                self.safely(self.client.log_artifact, self.run_id, str(run_dir / name))
        self.safely(self.client.set_terminated, self.run_id, STATUS.get(status, "FAILED"))

    def safely(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """`call(...)`, or None once MLflow has failed: the first failure is reported once and logging stops."""
        if self.failed:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            self.failed = True
            sys.stderr.write(f"warning: MLflow logging stopped ({first_line(exc)}); training goes on and the run folder is complete\n")
            sys.stderr.flush()
            return None

    def callback(self) -> Any:
        """The Keras callback that logs every epoch's logs at step = the epoch number history.json gives it (1-based)."""
        return keras.callbacks.LambdaCallback(on_epoch_end=self.log_epoch)

    def log_epoch(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Log one epoch's metrics, unless it diverged (as history.json: a diverged epoch is not recorded)."""
        if is_finite((logs or {}).get("loss", 0.0)):
            self.log_metrics(dict(logs or {}), epoch + 1)
