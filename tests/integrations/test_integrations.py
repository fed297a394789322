"""output.tensorboard and output.mlflow against the real packages: event files read back, a local MLflow store read back."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import TESTS, TINY, kerasrun_process, merge, modules_loaded_by, only_run, train
from typer.testing import CliRunner

from kerasrun._tf import keras
from kerasrun.cli import app

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


class RemoveStore(keras.callbacks.Callback):
    """Deletes the MLflow store after the first epoch: MLflow fails from then on, for real."""

    def __init__(self, store: str) -> None:
        super().__init__()
        self.store = store

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == 0:
            shutil.rmtree(self.store)


@pytest.fixture(scope="module")
def file_store_allowed() -> Iterator[None]:
    """MLflow 3 refuses file stores unless told otherwise (tests need no SQL driver this way)."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    yield
    if before is None:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]
    else:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def write(folder: Path, changes: dict[str, Any]) -> Path:
    """TINY with `changes`, as folder/config.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, changes), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, file_store_allowed: None) -> tuple[Path, Path, Path]:
    """The tiny run with TensorBoard and MLflow (a relative file store), the same run without them, and the store."""
    folder = tmp_path_factory.mktemp("tracked")
    # update_freq 5: batch scalars too, and (a Keras quirk kerasrun works around) epoch scalars still at every epoch.
    board = {"update_freq": 5, "histogram_freq": 1}
    config = write(folder, {"output": {"tensorboard": board, "mlflow": {"tracking_uri": "file:mlruns", "experiment": "tiny-exp"}}})
    runner = CliRunner()
    result = train(runner, config, folder / "runs")
    assert result.exit_code == 0, result.output
    plain = write(folder / "plain", {})
    assert train(runner, plain, folder / "plain" / "runs").exit_code == 0
    return only_run(folder / "runs"), only_run(folder / "plain" / "runs"), folder / "mlruns"


def event_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of the epoch_ scalars in TensorBoard event files, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kerasrun._tf import tf

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in events.Tensors(tag)]
        for tag in events.Tags()["tensors"]
        if tag.startswith("epoch_")
    }


def check_events(run: Path) -> None:
    """The run's event files hold every epoch's training and validation metrics, equal to history.json's."""
    history = json.loads((run / "history.json").read_text())
    train_events, val_events = event_scalars(run / "tensorboard" / "train"), event_scalars(run / "tensorboard" / "validation")
    for name in ("loss", "sparse_categorical_accuracy"):
        assert train_events[f"epoch_{name}"] == [(epoch - 1, value) for epoch, value in zip(history["epoch"], history[name], strict=True)]
        assert val_events[f"epoch_{name}"] == [
            (epoch - 1, value) for epoch, value in zip(history["epoch"], history[f"val_{name}"], strict=True)
        ]


def test_tensorboard_writes_the_epoch_metrics_into_the_run_folder(tracked) -> None:
    run, _, _ = tracked
    check_events(run)


def test_tensorboard_works_with_the_custom_loop(tmp_path: Path, runner: CliRunner) -> None:
    config = write(tmp_path, {"train": {"loop": "custom"}, "output": {"tensorboard": True}})
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    check_events(only_run(tmp_path / "runs"))


def mlflow_client(store: Path) -> Any:
    """MLflow's client on the file store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store.as_uri())


def only_mlflow_run(store: Path, experiment: str) -> Any:
    """The one MLflow run in `experiment`."""
    client = mlflow_client(store)
    (found,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return found


def test_mlflow_store_holds_params_epoch_metrics_status_and_files(tracked) -> None:
    run, _, store = tracked
    assert store.is_dir()  # `file:mlruns` resolved against the config's folder, not the working directory
    logged = only_mlflow_run(store, "tiny-exp")
    client = mlflow_client(store)
    assert logged.info.status == "FINISHED" and logged.info.run_name == run.name
    params = logged.data.params
    assert params["name"] == "tiny" and params["train.epochs"] == "3" and params["compile.optimizer.Adam.learning_rate"] == "0.01"
    assert params["model.layers.0.Dense.units"] == "8" and params["output.mlflow.tracking_uri"] == store.as_uri()
    history = json.loads((run / "history.json").read_text())
    for key, values in history.items():
        if key != "epoch":
            logged_values = [(m.step, m.value) for m in client.get_metric_history(logged.info.run_id, key)]
            assert logged_values == list(zip(history["epoch"], values, strict=True)), key
    test_metrics = json.loads((run / "metrics.json").read_text())
    assert {f"test_{k}": v for k, v in test_metrics.items()}.items() <= logged.data.metrics.items()
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"config.yaml", "history.json", "metrics.json", "run.json", "model.keras", "curves.png"} <= artifacts
    local = Path(client.download_artifacts(logged.info.run_id, "run.json", str(run.parent / "downloaded")))
    assert json.loads(local.read_text())["status"] == "completed"  # the final run.json, not a mid-run one


def test_tracking_leaves_history_json_byte_for_byte_the_same(tracked) -> None:
    run, plain, _ = tracked
    assert (run / "history.json").read_bytes() == (plain / "history.json").read_bytes()
    assert (run / "metrics.json").read_bytes() == (plain / "metrics.json").read_bytes()


def test_an_interrupted_run_is_killed_in_mlflow_and_resume_continues_it(
    tmp_path: Path, runner: CliRunner, file_store_allowed: None
) -> None:
    callbacks = [{"helpers_custom:InterruptOnce": {"marker": str(tmp_path / "interrupted"), "epoch": 2}}]
    output = {"tensorboard": True, "mlflow": {"tracking_uri": "store", "experiment": "x"}}
    config = write(tmp_path, {"train": {"callbacks": callbacks}, "output": output})
    assert train(runner, config, tmp_path / "runs").exit_code == 130
    store = tmp_path / "store"
    logged = only_mlflow_run(store, "x")
    assert logged.info.status == "KILLED"
    assert [m.step for m in mlflow_client(store).get_metric_history(logged.info.run_id, "loss")] == [1, 2]
    run = only_run(tmp_path / "runs")
    resumed = runner.invoke(app, ["resume", str(run), "--progress", "plain"])
    assert resumed.exit_code == 0, resumed.output
    again = only_mlflow_run(store, "x")  # the same MLflow run, not a second one
    assert again.info.run_id == logged.info.run_id and again.info.status == "FINISHED"
    history = json.loads((run / "history.json").read_text())
    logged_loss = [(m.step, m.value) for m in mlflow_client(store).get_metric_history(logged.info.run_id, "loss")]
    assert logged_loss == list(zip(history["epoch"], history["loss"], strict=True))
    check_events(run)  # TensorBoard's events continue at the resumed epochs' own steps


def test_mlflow_failing_mid_run_warns_once_and_training_goes_on(tmp_path: Path, file_store_allowed: None) -> None:
    store = tmp_path / "store"
    callbacks = [{"test_integrations:RemoveStore": {"store": str(store)}}]
    config = write(tmp_path, {"train": {"callbacks": callbacks}, "output": {"mlflow": {"tracking_uri": str(store), "experiment": "x"}}})
    result = train(CliRunner(), config, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: MLflow logging stopped") == 1 and "training goes on" in result.output
    run = only_run(tmp_path / "runs")
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2, 3]


def test_an_unusable_store_fails_before_the_run_folder_exists(tmp_path: Path, file_store_allowed: None) -> None:
    (tmp_path / "taken").write_text("a file where the store's folder should be")
    config = write(tmp_path, {"output": {"mlflow": {"tracking_uri": "taken/mlruns"}}})
    result = train(CliRunner(), config, tmp_path / "runs")
    assert result.exit_code == 2 and "output.mlflow: the MLflow tracking store can't be used" in result.output
    assert not (tmp_path / "runs").exists()


# A real import failure: a meta-path finder that refuses the packages, installed before kerasrun runs.
BLOCKED = textwrap.dedent(
    """
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorboard", "mlflow"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Block())
    sys.argv = ["kerasrun", *sys.argv[1:]]
    from kerasrun.cli import main
    main()
    """
)


def run_blocked(*args: str) -> subprocess.CompletedProcess:
    """`kerasrun ARGS` in a process where `import tensorboard` and `import mlflow` fail."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    return subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True, env=env, timeout=300)


def test_without_the_packages_validate_and_train_exit_2_naming_them(tmp_path: Path) -> None:
    uses = write(tmp_path, {"train": {"callbacks": ["TensorBoard"]}, "output": {"tensorboard": True, "mlflow": {"tracking_uri": "m"}}})
    result = run_blocked("validate", str(uses))
    assert result.returncode == 2, result.stderr
    assert "3 problems found" in result.stderr
    assert "output.tensorboard: output.tensorboard writes TensorBoard event files through the `tensorboard` package" in result.stderr
    assert "train.callbacks[0]: keras.callbacks.TensorBoard writes its events through the `tensorboard` package" in result.stderr
    assert "output.mlflow: output.mlflow logs the run through the `mlflow` package" in result.stderr
    assert "pip install 'kerasrun[tensorboard]'" in result.stderr and "pip install 'kerasrun[mlflow]'" in result.stderr
    result = run_blocked("train", str(uses), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "`tensorboard` package, which cannot be imported" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()
    assert run_blocked("validate", str(write(tmp_path / "plain", {}))).returncode == 0  # a config without them is fine


def test_validate_finds_the_packages_without_importing_them_or_tensorflow(tmp_path: Path) -> None:
    uses = write(tmp_path, {"output": {"tensorboard": True, "mlflow": {"tracking_uri": "m"}}})
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom kerasrun.cli import app\n"
        f"assert CliRunner().invoke(app, ['validate', {str(uses)!r}]).exit_code == 0"
    )
    assert not {"tensorflow", "keras", "tensorboard", "mlflow"} & modules_loaded_by(code)


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("sqlalchemy", "alembic")), reason="MLflow's sqlite store needs sqlalchemy and alembic"
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, about MLflow's own queries
def test_mlflow_sqlite_store(tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow 3 puts a sqlite store's artifacts under ./mlartifacts
    config = write(tmp_path / "cfg", {"output": {"mlflow": {"tracking_uri": "sqlite:///tracking.db", "experiment": "sql"}}})
    assert train(runner, config, tmp_path / "runs").exit_code == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'cfg' / 'tracking.db'}")  # relative to the config's folder
    experiment = client.get_experiment_by_name("sql")
    assert experiment is not None
    (logged,) = client.search_runs([experiment.experiment_id])
    history = json.loads((only_run(tmp_path / "runs") / "history.json").read_text())
    assert logged.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(logged.info.run_id, "val_loss")] == list(
        zip(history["epoch"], history["val_loss"], strict=True)
    )
    assert "model.keras" in {a.path for a in client.list_artifacts(logged.info.run_id)}


def test_a_failed_run_is_failed_in_mlflow(tmp_path: Path, runner: CliRunner, file_store_allowed: None) -> None:
    callbacks = [{"helpers_custom:FailAtEpoch": {"epoch": 1}}]
    config = write(tmp_path, {"train": {"callbacks": callbacks}, "output": {"mlflow": {"tracking_uri": "store", "experiment": "f"}}})
    assert train(runner, config, tmp_path / "runs").exit_code == 1
    logged = only_mlflow_run(tmp_path / "store", "f")
    assert logged.info.status == "FAILED" and "run.json" in {
        a.path for a in mlflow_client(tmp_path / "store").list_artifacts(logged.info.run_id)
    }


def free_local_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_tracking_server_fails_at_once_before_the_run_folder(tmp_path: Path) -> None:
    port = free_local_port()
    config = write(tmp_path, {"output": {"mlflow": {"tracking_uri": f"http://127.0.0.1:{port}", "experiment": "x"}}})
    result = train(CliRunner(), config, tmp_path / "runs")  # MLflow's own retries took minutes here
    assert result.exit_code == 2, result.output
    assert f"output.mlflow: the MLflow tracking store can't be used: cannot connect to 127.0.0.1:{port}" in result.output
    assert "start the tracking server" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_tracking_server_that_never_answers_times_out_before_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):  # kerasrun's own defaults, not a user's
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:  # accepts connections (the kernel's backlog) and never answers a request
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        config = write(tmp_path, {"output": {"mlflow": {"tracking_uri": f"http://127.0.0.1:{port}", "experiment": "x"}}})
        result = kerasrun_process(["train", str(config), "--runs-dir", str(tmp_path / "runs")], timeout=300)
    assert result.returncode == 2, result.stderr
    assert "output.mlflow: the MLflow tracking store can't be used" in result.stderr and "timed out" in result.stderr
    assert not (tmp_path / "runs").exists()
