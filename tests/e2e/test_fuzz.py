"""Hundreds of broken configs and data files: every one exits 0 or 2 (3 for a diverged loss), never with a
traceback, in bounded memory, and leaves a run folder only when it trained."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fuzz_configs import TABLE, invalid_cases, mutations
from helpers import TINY, merge
from typer.testing import CliRunner

from kerasrun.cli import app

MUTATIONS = mutations()
INVALID = invalid_cases()
MAX_PEAK_MB = 64  # validate: no TensorFlow, a bomb or a deep file refused before it grows


@pytest.fixture(autouse=True)
def quiet_tensorflow_logging() -> None:
    """Many in-process runs make TensorFlow log retracing warnings to a stream a finished CliRunner closed."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def validate(runner: CliRunner, path: Path) -> tuple[Any, float]:
    """`kerasrun validate PATH`: the result and the peak traced memory (MB)."""
    tracemalloc.start()
    try:
        result = runner.invoke(app, ["validate", str(path)])
        return result, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_there_are_at_least_500_mutations() -> None:
    assert len(MUTATIONS) >= 500 and len({ident for ident, _ in MUTATIONS}) == len(MUTATIONS)


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, Any, float]]:
    """`validate` of every mutation, once for the module: (id, YAML text, result, peak MB)."""
    runner, folder = CliRunner(), tmp_path_factory.mktemp("validate")
    outcomes = []
    for ident, text in MUTATIONS:
        path = folder / "config.yaml"
        path.write_text(text)
        result, peak = validate(runner, path)
        outcomes.append((ident, text, result, peak))
    return outcomes


def test_validate_every_mutation(validated) -> None:
    bad = [
        f"{ident}: exit {result.exit_code}, {peak:.0f} MB: {result.output[-200:]!r}"
        for ident, _, result, peak in validated
        if result.exit_code not in (0, 2) or "Traceback" in result.output or peak > MAX_PEAK_MB
    ]
    assert not bad, "\n".join(bad)


def trainable(validated: list[tuple[str, str, Any, float]]) -> list[tuple[str, str]]:
    """The mutations `validate` accepts: only training can tell whether they are sound."""
    return [(ident, text) for ident, text, result, _ in validated if result.exit_code == 0]


def smoke(runner: CliRunner, path: Path, runs: Path, codes: dict[int, int] | None = None) -> str | None:
    """`kerasrun train PATH --smoke`; what is wrong with the outcome, or None (`codes` counts the exit codes)."""
    result = runner.invoke(app, ["train", str(path), "--smoke", "--runs-dir", str(runs), "--progress", "none"])
    if codes is not None:
        codes[result.exit_code] = codes.get(result.exit_code, 0) + 1
    folders = [p for p in runs.iterdir()] if runs.exists() else []
    if result.exit_code not in (0, 2, 3) or "Traceback" in result.output or "Graph execution error" in result.output:
        return f"exit {result.exit_code}: {result.output[-300:]!r} {result.exception!r:.200}"
    if result.exit_code == 2 and folders:
        return f"exit 2 but a run folder was written: {folders}"
    return None


FAST_COUNT = 20  # accepted mutations trained without the slow marker; the slow test trains every other one of the rest


def train_mutations(runner: CliRunner, tmp_path: Path, accepted: list[tuple[str, str]], first: int) -> dict[int, int]:
    """Smoke-train `accepted` (numbered from `first`); every outcome must be sound. The exit codes counted."""
    bad: list[str] = []
    codes: dict[int, int] = {}
    for number, (ident, text) in enumerate(accepted, start=first):
        path = tmp_path / "config.yaml"
        path.write_text(text)
        if (problem := smoke(runner, path, tmp_path / f"runs{number}", codes)) is not None:
            bad.append(f"{ident}: {problem}")
    assert not bad, "\n".join(bad)
    return codes


def test_train_the_first_accepted_mutations(runner, tmp_path, validated) -> None:
    accepted = trainable(validated)
    assert len(accepted) >= 50  # the mutator still produces configs that pass the schema
    codes = train_mutations(runner, tmp_path, accepted[:FAST_COUNT], first=0)
    assert codes.get(0, 0) >= 3 and codes.get(2, 0) >= 3, codes  # both outcomes occur: the test is not vacuous


@pytest.mark.slow
def test_train_every_other_accepted_mutation(runner, tmp_path, validated) -> None:
    # With the test above (CI runs both): every accepted mutation is validated, half of those after the fast ones trained.
    codes = train_mutations(runner, tmp_path, trainable(validated)[FAST_COUNT::2], first=FAST_COUNT)
    assert codes.get(0, 0) >= 3 and codes.get(2, 0) >= 3, codes


# --------------------------------------------------------------------------- broken data files

RNG = np.random.default_rng(1)
X = RNG.normal(size=(40, 2)).astype(np.float32)
Y = RNG.integers(0, 3, size=40)
NOT_SYNTHETIC = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}


def npz_variants(folder: Path) -> list[tuple[str, Path]]:
    """A family of broken (and a few fine) .npz files."""
    good = folder / "good.npz"
    np.savez(good, x_train=X, y_train=Y)
    raw = good.read_bytes()
    variants: dict[str, Any] = {
        "empty file": b"",
        "truncated 10%": raw[: len(raw) // 10],
        "truncated 90%": raw[: len(raw) * 9 // 10],
        "flipped bytes": bytes(b ^ 0xFF if i % 97 == 50 else b for i, b in enumerate(raw)),
        "text": b"x_train,y_train\n1,2\n",
    }
    arrays: dict[str, dict[str, Any]] = {
        "nan features": {"x_train": np.where(X > 1.5, np.nan, X), "y_train": Y},
        "3-d features": {"x_train": X.reshape(40, 2, 1), "y_train": Y},
        "labels 0..9": {"x_train": X, "y_train": RNG.integers(0, 10, size=40)},
        "float labels": {"x_train": X, "y_train": Y + 0.25},
        "one row": {"x_train": X[:1], "y_train": Y[:1]},
        "bytes features": {"x_train": X.astype("S4"), "y_train": Y},
        "bool features": {"x_train": X > 0, "y_train": Y},
        "no y": {"x_train": X},
        "scalar x": {"x_train": np.float32(1.0), "y_train": Y},
        "2-d labels": {"x_train": X, "y_train": Y.reshape(40, 1)},
    }
    out = []
    for name, content in variants.items():
        path = folder / f"{name}.npz"
        path.write_bytes(content)
        out.append((name, path))
    for name, named in arrays.items():
        path = folder / f"{name}.npz"
        np.savez(path, **named)
        out.append((name, path))
    objects = np.empty(40, dtype=object)
    objects[:] = list(range(40))
    np.savez(folder / "objects.npz", x_train=objects, y_train=Y)  # pickled: refused, never loaded
    out.append(("objects", folder / "objects.npz"))
    return out


def csv_variants(folder: Path) -> list[tuple[str, Path]]:
    """A family of broken (and a few fine) CSV files with columns a, b, label."""
    rows = "".join(f"{a:.3f},{b:.3f},{label}\n" for (a, b), label in zip(X, Y, strict=True))
    texts: dict[str, bytes] = {
        "empty": b"",
        "header only": b"a,b,label\n",
        "ragged": ("a,b,label\n" + rows + "1,2\n").encode(),
        "extra field": ("a,b,label\n" + rows + "1,2,3,4\n").encode(),
        "duplicate header": ("a,a,label\n" + rows).encode(),
        "latin-1": ("a,b,label\n" + rows.replace("0\n", "é\n")).encode("latin-1"),
        "a word in a number": ("a,b,label\n" + rows + "one,2,0\n").encode(),
        "no target column": ("a,b,c\n" + rows).encode(),
        "nan": ("a,b,label\n" + rows + "nan,1,0\n").encode(),
        "semicolons": ("a;b;label\n" + rows.replace(",", ";")).encode(),
        "fine": ("a,b,label\n" + rows).encode(),
        "quoted newline": ('a,b,label\n"1\n2",3,0\n' + rows).encode(),
        "NUL bytes": ("a,b,label\n" + rows).encode().replace(b"\n", b"\x00\n", 3),
    }
    out = []
    for name, content in texts.items():
        path = folder / f"{name}.csv"
        path.write_bytes(content)
        out.append((name, path))
    return out


def test_broken_data_files(runner, write_config, tmp_path) -> None:
    bad: list[str] = []
    codes: dict[int, int] = {}
    sources = [("npz", path, name) for name, path in npz_variants(tmp_path)]
    sources += [("csv", path, name) for name, path in csv_variants(tmp_path)]
    for number, (source, path, name) in enumerate(sources):
        data = {"source": source, "path": str(path), **NOT_SYNTHETIC}
        if source == "csv":
            data["target"] = "label"
        config = write_config({"data": data, "train": {"validation_split": None, "stratify": False}}, f"c{number}.yaml")
        if (problem := smoke(runner, config, tmp_path / f"runs{number}", codes)) is not None:
            bad.append(f"{source} {name}: {problem}")
    assert not bad, "\n".join(bad)
    assert codes.get(2, 0) >= 20 and codes.get(0, 0) >= 3, codes  # most files are refused; the fine ones train


# --------------------------------------------------------------------------- labelled mistakes


@pytest.mark.parametrize(("ident", "sections", "args", "where"), INVALID, ids=[case[0] for case in INVALID])
def test_every_labelled_mistake_is_refused(runner, tmp_path, ident: str, sections: dict[str, Any], args: list[str], where: str) -> None:
    (tmp_path / "table.csv").write_text(TABLE)
    config = tmp_path / "config.yaml"
    replaced: dict[str, Any] = {key: sections[key] for key in ("data", "model") if key in sections}
    base = {**TINY, "train": {"epochs": 1, "batch_size": 16}, **replaced}
    merged = merge(base, {key: value for key, value in sections.items() if key not in ("data", "model")})
    config.write_text(yaml.safe_dump(merged, sort_keys=False))
    args = [arg.replace("TMP", str(tmp_path)) for arg in args]
    result = runner.invoke(app, ["validate", str(config), *args])
    runs = tmp_path / "runs"
    # Only data or a built model can tell: training must refuse before it writes anything. A runs_dir case trains
    # in full, since --smoke and --runs-dir choose the folder themselves.
    where_to = [] if where == "output.runs_dir" else ["--smoke", "--runs-dir", str(runs)]
    if result.exit_code == 0:
        result = runner.invoke(app, ["train", str(config), *where_to, "--progress", "none", *args])
    assert result.exit_code == 2, f"{ident}: exit {result.exit_code}\n{result.output}"
    assert where in result.output, result.output  # located at the key that is wrong
    assert "Traceback" not in result.output and "Graph execution error" not in result.output, result.output
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
