"""output.mlflow under multi_worker: only the chief opens the store; two processes creating one new experiment agree on it."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import TINY, merge

from kerasrun.config.load import load_config
from kerasrun.integrations.mlflow_tracking import find_or_create_experiment, open_tracker

pytest.importorskip("mlflow")
pytestmark = [
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("sqlalchemy", "alembic")), reason="MLflow's sqlite store needs sqlalchemy and alembic"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # SQLAlchemy's, about MLflow's own queries
]


def write(folder: Path, changes: dict[str, Any]) -> Path:
    """TINY with `changes`, as folder/config.yaml."""
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, changes), sort_keys=False))
    return path


def test_only_the_chief_opens_the_tracking_store(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"output": {"mlflow": {"tracking_uri": "sqlite:///tracking.db", "experiment": "mw"}}}))
    assert open_tracker(config, is_chief=False) is None
    assert not (tmp_path / "tracking.db").exists()  # a worker never touched the store
    tracker = open_tracker(config, is_chief=True)
    assert tracker is not None and (tmp_path / "tracking.db").is_file()
    experiment = tracker.client.get_experiment_by_name("mw")
    assert experiment is not None and experiment.experiment_id == tracker.experiment_id


def test_two_workers_creating_one_new_experiment_at_once_get_the_same_id(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'tracking.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # the store's tables exist (made once, as the first run does)
    both_looked = threading.Barrier(2, timeout=60)

    class LooksThenCreates(MlflowClient):
        """MLflow's client, except that creating waits until both workers have looked and found no experiment: the race, every time."""

        def create_experiment(self, *args: Any, **kwargs: Any) -> str:
            both_looked.wait()
            return super().create_experiment(*args, **kwargs)

    ids: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            ids.append(find_or_create_experiment(LooksThenCreates(tracking_uri=uri), "shared"))
        except BaseException as exc:  # the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    experiments = [e for e in MlflowClient(tracking_uri=uri).search_experiments() if e.name == "shared"]
    assert len(experiments) == 1 and ids == [experiments[0].experiment_id] * 2
