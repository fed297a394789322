"""Paths with a scheme, end to end through the CLI on TensorFlow's `ram://` filesystem (the gfile code path of gs:// and s3://).

`ram://` lives inside one process, so every command runs in-process (Typer's CliRunner).
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import merge, modules_loaded_by, only_run, train
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.config.resolved import resolved_dict

tf = pytest.importorskip("tensorflow")

BASE: dict[str, Any] = {
    "name": "remote",
    "seed": 3,
    "model": {
        "inputs": {"x": [4]},
        "layers": [  # named: in one process Keras would number them afresh each build, and init_from matches by name
            {"Dense": {"units": 8, "activation": "relu", "name": "hidden"}},
            {"Dropout": {"rate": 0.1}},
            {"Dense": {"units": 2, "activation": "softmax", "name": "head"}},
        ],
    },
    "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "train": {"epochs": 3, "batch_size": 16, "validation_split": 0.25},
}


def put(url: str, data: bytes) -> str:
    """Write a file into the in-process `ram://` filesystem."""
    tf.io.gfile.makedirs(url.rsplit("/", 1)[0])
    if tf.io.gfile.exists(url):  # ram:// appends to a file opened with "wb" (TensorFlow 2.21): replace it whole
        tf.io.gfile.remove(url)
    with tf.io.gfile.GFile(url, "wb") as f:
        f.write(data)
    return url


def get(url: str) -> bytes:
    """A file's bytes from `ram://`."""
    with tf.io.gfile.GFile(url, "rb") as f:
        return bytes(f.read())


@pytest.fixture(scope="module")
def store() -> str:
    """A fresh `ram://` folder holding data.npz and table.csv (seeded two-class data)."""
    root = f"ram://kerasrun-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    buffer = io.BytesIO()
    np.savez(buffer, x_train=x[:128], y_train=y[:128], x_test=x[128:], y_test=y[128:])
    put(f"{root}/data/data.npz", buffer.getvalue())
    lines = ["a,b,c,d,label"] + [",".join(f"{v:.5f}" for v in row) + f",{k}" for row, k in zip(x, y, strict=True)]
    put(f"{root}/data/table.csv", ("\n".join(lines) + "\n").encode())
    return root


def write(folder: Path, changes: dict[str, Any]) -> Path:
    """A config in `folder`: BASE with `changes` merged one level deep."""
    path = folder / "remote.yaml"
    path.write_text(yaml.safe_dump(merge(BASE, changes), sort_keys=False))
    return path


def npz_config(folder: Path, store: str, marker: Path) -> Path:
    """The npz config, interrupted at the start of epoch 2 unless `marker` exists."""
    callbacks = [{"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 1}}]
    return write(folder, {"data": {"source": "npz", "path": f"{store}/data/data.npz"}, "train": {"callbacks": callbacks}})


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, store: str) -> Path:
    """The npz config trained without interruption into a local runs dir: the bytes the remote run must end with."""
    folder = tmp_path_factory.mktemp("local")
    marker = folder / "interrupted"
    marker.touch()  # the callback has "already interrupted": this run goes straight through
    result = train(CliRunner(), npz_config(folder, store, marker), folder / "runs")
    assert result.exit_code == 0, result.output
    return only_run(folder / "runs")


def test_a_run_folder_on_ram_is_listed_evaluated_and_resumed_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, local_run: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    runs = f"{store}/runs"
    config = npz_config(tmp_path, store, tmp_path / "interrupted")
    result = runner.invoke(app, ["train", str(config), "--runs-dir", runs, "--progress", "plain"])  # a URL, as a user types it
    assert result.exit_code == 130, result.output
    (name,) = [p.rstrip("/") for p in tf.io.gfile.listdir(runs)]
    run = f"{runs}/{name}"
    assert f"continue it with `kerasrun resume {run}`" in result.output
    info = json.loads(get(f"{run}/run.json"))
    assert info["status"] == "interrupted" and info["epochs_completed"] == 1
    assert tf.io.gfile.glob(f"{run}/checkpoints/epoch-*.npz")
    assert yaml.safe_load(get(f"{run}/config.yaml"))["data"]["path"] == f"{store}/data/data.npz"  # kept as a URL
    assert not any(p.name.endswith(":") for p in tmp_path.rglob("*"))  # no local folder named `ram:`

    listed = runner.invoke(app, ["runs", "--runs-dir", runs, "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert row["status"] == "interrupted" and name in json.dumps(row)

    resumed = runner.invoke(app, ["resume", run, "--progress", "plain"])
    assert resumed.exit_code == 0, resumed.output
    assert f"done: {run}" in resumed.output
    assert get(f"{run}/history.json") == (local_run / "history.json").read_bytes()
    assert get(f"{run}/metrics.json") == (local_run / "metrics.json").read_bytes()
    assert json.loads(get(f"{run}/run.json"))["status"] == "completed"
    assert len(tf.io.gfile.glob(f"{run}/checkpoints/epoch-*.npz")) >= 1

    compared = runner.invoke(app, ["compare", run, str(local_run)])
    assert compared.exit_code == 0, compared.output
    assert name in compared.output and local_run.name in compared.output

    scored = runner.invoke(app, ["evaluate", run, "--json"])
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((local_run / "metrics.json").read_text())
    assert json.loads(scored.output) == pytest.approx(metrics, abs=1e-6)

    started = train(runner, config, tmp_path / "runs", "--init-from", run, "--set", "train.epochs=1")
    assert started.exit_code == 0, started.output
    assert yaml.safe_load((only_run(tmp_path / "runs") / "config.yaml").read_text())["model"]["init_from"]["path"] == run

    exported = runner.invoke(app, ["export", run, "--format", "saved_model", "-o", f"{store}/exports/model"])
    assert exported.exit_code == 0, exported.output
    assert tf.io.gfile.exists(f"{store}/exports/model/saved_model.pb")
    assert not any(p.name.endswith(":") for p in tmp_path.rglob("*"))
    again = runner.invoke(app, ["export", run, "--format", "saved_model", "-o", f"{store}/exports/model"])
    assert again.exit_code == 0, again.output  # an earlier export is replaced
    put(f"{store}/work/notes.txt", b"important")  # a folder of the user's own is never deleted
    refused = runner.invoke(app, ["export", run, "-o", f"{store}/work"])
    assert refused.exit_code == 2 and "holds other things than a SavedModel (notes.txt)" in refused.output, refused.output
    assert get(f"{store}/work/notes.txt") == b"important" and tf.io.gfile.listdir(f"{store}/work") == ["notes.txt"]


def test_a_csv_file_and_its_test_file_on_ram(tmp_path: Path, store: str) -> None:
    config = write(
        tmp_path,
        {
            "data": {"source": "csv", "path": f"{store}/data/table.csv", "test_path": f"{store}/data/table.csv", "target": "label"},
            "train": {"epochs": 1, "batch_size": 32},
        },
    )
    result = train(CliRunner(), config, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((only_run(tmp_path / "runs") / "config.yaml").read_text())["data"]
    assert saved["path"] == saved["test_path"] == f"{store}/data/table.csv"
    assert json.loads((only_run(tmp_path / "runs") / "metrics.json").read_text())["loss"] > 0


@pytest.mark.parametrize(
    ("changes", "args", "where"),
    [
        ({}, ["--runs-dir", "foo://bucket/runs"], "--runs-dir"),
        ({"output": {"runs_dir": "foo://bucket/runs"}}, [], "output.runs_dir"),
        ({"data": {"source": "npz", "path": "foo://bucket/data.npz"}}, [], "data.path"),
        ({"data": {"source": "npz", "path": "ram://nowhere-at-all/data.npz"}}, [], "data.path"),
    ],
)
def test_an_unsupported_scheme_or_missing_remote_file_is_refused_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, changes: dict[str, Any], args: list[str], where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, merge({"data": {"source": "npz", "path": f"{store}/data/data.npz"}}, changes))
    result = CliRunner().invoke(app, ["train", str(config), "--progress", "plain", *args])
    assert result.exit_code == 2, result.output
    assert where in result.output and "Traceback" not in result.output
    if where != "--runs-dir":
        assert "remote.yaml" in result.output  # located in the config file
    reason = "no file matches" if "nowhere" in json.dumps(changes) else "no filesystem for `foo://`"
    assert reason in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remote.yaml"]  # no runs/, no `foo:` folder


def test_a_url_stays_a_url_without_tensorflow(tmp_path: Path) -> None:
    config = write(tmp_path, {"data": {"source": "npz", "path": "gs://bucket/data.npz"}, "output": {"runs_dir": "gs://bucket/runs"}})
    loaded = load_config(config)
    assert resolved_dict(loaded)["data"]["path"] == "gs://bucket/data.npz"  # never joined to the config's folder
    code = f"from typer.testing import CliRunner\nfrom kerasrun.cli import app\nassert CliRunner().invoke(app, ['validate', {str(config)!r}]).exit_code == 0\n"
    assert not {"tensorflow", "keras"} & modules_loaded_by(code)


@pytest.mark.parametrize(("age", "status"), [(5, "running"), (3600, "crashed")])
def test_a_remote_run_of_another_host_is_alive_while_its_heartbeat_is_fresh(store: str, local_run: Path, age: int, status: str) -> None:
    from datetime import datetime, timedelta, timezone

    from kerasrun.rundir.trust import SIGNATURE_FIELD, sign

    runs = f"{store}/alive-{age}"
    run = f"{runs}/{local_run.name}"
    for path in local_run.rglob("*"):
        if path.is_file() and path.name != ".lock":
            put(f"{run}/{path.relative_to(local_run).as_posix()}", path.read_bytes())
    info = json.loads((local_run / "run.json").read_text())
    beat = (datetime.now(timezone.utc) - timedelta(seconds=age)).isoformat()
    info.update(status="running", host="another-host", pid=1, heartbeat=beat)  # as a process training elsewhere leaves it
    info[SIGNATURE_FIELD] = sign(info)
    put(f"{run}/run.json", json.dumps(info).encode())
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "--runs-dir", runs, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["status"] for row in json.loads(listed.output)] == [status], listed.output
    if status == "running":  # a lock can't be held on a store: the heartbeat is what keeps a second process out
        refused = runner.invoke(app, ["resume", run, "--progress", "plain"])
        assert refused.exit_code == 2 and "still training" in refused.output, refused.output
        assert json.loads(get(f"{run}/run.json")) == info  # nothing was published


def test_tfrecord_shards_by_a_glob_on_ram_train_as_the_same_local_shards(tmp_path: Path, store: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    (tmp_path / "shards").mkdir()
    for where in (f"{store}/shards", str(tmp_path / "shards")):
        tf.io.gfile.makedirs(where)
        writers = [tf.io.TFRecordWriter(f"{where}/part-{k}.tfrecord") for k in range(3)]
        for i, (row, label) in enumerate(zip(x, y, strict=True)):
            feature = {
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=row)),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            writers[i % 3].write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        for writer in writers:
            writer.close()
    features = {"x": {"dtype": "float32", "shape": [4]}, "y": {"dtype": "int64", "shape": []}}
    histories = []
    for files in (f"{store}/shards/part-*.tfrecord", "shards/part-*.tfrecord"):
        data = {"source": "tfrecord", "files": files, "features": features, "inputs": ["x"], "targets": ["y"]}
        config = write(tmp_path, {"data": data, "train": {"epochs": 2, "batch_size": 16, "shuffle": False}})
        runs = tmp_path / ("remote" if files.startswith("ram") else "local")
        result = train(CliRunner(), config, runs)
        assert result.exit_code == 0, result.output
        histories.append((only_run(runs) / "history.json").read_bytes())
    assert histories[0] == histories[1]


def test_runs_and_sweep_refuse_what_they_cannot_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "--runs-dir", "foo://bucket/runs"])
    assert listed.exit_code == 2 and "no filesystem for `foo://`" in listed.output, listed.output
    empty = runner.invoke(app, ["runs", "--runs-dir", f"{store}/no-runs-yet", "--json"])
    assert empty.exit_code == 0 and json.loads(empty.output) == [], empty.output
    config = write(tmp_path, {"data": {"source": "npz", "path": f"{store}/data/data.npz"}})
    swept = runner.invoke(app, ["sweep", str(config), "--grid", "seed=1,2", "--runs-dir", f"{store}/sweeps"])
    assert swept.exit_code == 2 and "a sweep folder must be local" in swept.output, swept.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remote.yaml"]  # no `ram:` folder, no runs/
    assert not tf.io.gfile.exists(f"{store}/sweeps")


def test_a_url_is_told_from_a_local_path_also_after_pathlib_collapsed_it() -> None:
    from kerasrun.config.urls import url_of

    assert url_of("gs://bucket/runs/") == "gs://bucket/runs"
    assert url_of(Path("gs://bucket/runs")) == "gs://bucket/runs"  # Typer's Path option makes it `gs:/bucket/runs`
    assert url_of(Path("s3://b")) == "s3://b"
    assert [url_of(p) for p in ("runs", "/abs/gs:/x", "C:/data", "a:b/c", Path("rel/x"))] == [None] * 5
