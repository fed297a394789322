"""Export artifacts: a format's converter (Keras's `model.export`), run quietly and refused where the format
cannot hold the model; the artifact run in its own runtime; the errors an export ends with.

TFLite is converted with its builtin ops only (TensorFlow Select ops would need the Flex delegate, which
TensorFlow's own `tf.lite.Interpreter` lacks, so no artifact with them could be checked), and an ONNX
graph in which tf2onnx left TensorFlow ops it has no ONNX op for (string splitting, regex, hash tables)
is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import tf
from kerasrun.errors import ConfigError, KerasrunError, Problem, first_line
from kerasrun.optional import is_installed
from kerasrun.rundir.layout import EXPORT_DIR
from kerasrun.use.predict import Features, as_outputs, model_feed

FORMATS = ("saved_model", "tflite", "onnx")
# Keras's names for the formats, and the default artifact name inside <run>/export/.
KERAS_FORMAT = {"saved_model": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}
DEFAULT_NAME = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
TOLERANCE = 1e-5  # float32 kernels differ between runtimes by a few ulp, never by more
# What may stand in a folder an export replaces: what TensorFlow's SavedModel writer puts there.
SAVED_MODEL_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "variables", "assets", "assets.extra", "fingerprint.pb", "keras_metadata.pb"}
TFLITE_IDENTIFIER = b"TFL3"  # the FlatBuffer file identifier, at bytes 4-8 of every .tflite
ONNX_FIRST_BYTE = b"\x08"  # a serialized ModelProto starts with field 1, ir_version, a varint


class ExportUnavailableError(ConfigError):
    """The format needs a package that is missing or does not work with this TensorFlow."""


class ExportMismatchError(KerasrunError):
    """The exported artifact does not give the Keras model's predictions (it was not written); exit 1."""


class ExportFailedError(KerasrunError):
    """Keras's exporter (or the converter under it) failed; nothing was written; exit 1."""


def check_format_available(fmt: str) -> None:
    """Exit 2 before anything is built when the format's converter is missing or broken here."""
    if fmt == "tflite" and not hasattr(getattr(tf, "lite", None), "TFLiteConverter"):
        raise ExportUnavailableError(
            Problem(
                key="--format", message=f"this TensorFlow ({tf.__version__}) has no tf.lite.TFLiteConverter", hint="export a SavedModel"
            )
        )
    if fmt != "onnx":
        return
    for package in ("tf2onnx", "onnx"):
        if not is_installed(package):
            raise ExportUnavailableError(
                Problem(key="--format", message=f"onnx needs the `{package}` package", hint="pip install 'kerasrun[onnx]'")
            )
    try:
        import tf2onnx  # noqa: F401  (its import fails when it does not fit this TensorFlow/NumPy/protobuf)
    except Exception as exc:
        raise ExportUnavailableError(
            Problem(
                key="--format",
                message=f"tf2onnx does not work with TensorFlow {tf.__version__} here: {type(exc).__name__}: {exc}",
                hint="export a SavedModel, or install a tf2onnx release that supports this TensorFlow",
            )
        ) from None


def default_output(run_dir: Path, fmt: str) -> Path:
    """<run>/export/saved_model, <run>/export/model.tflite or <run>/export/model.onnx."""
    return Path(run_dir) / EXPORT_DIR / DEFAULT_NAME[fmt]


def not_an_artifact(fmt: str, name: str, entries: list[str] | None, head: bytes | None) -> str | None:
    """Why what is at an export's target (a folder's `entries`, or a file's first bytes `head`) is not an earlier `fmt` export, or None.

    An export replaces its target whole, so only an empty target or an artifact of the same format may be
    there: `-o` pointed at a working folder, a run folder or some other file must never delete it.
    """
    if entries is not None:
        if fmt != "saved_model":
            return f"is a folder; a {fmt} export is a file"
        foreign = sorted(set(entries) - SAVED_MODEL_ENTRIES)
        if foreign or (entries and "saved_model.pb" not in entries):
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            return f"is a folder that holds other things than a SavedModel ({shown or 'no saved_model.pb'})"
        return None
    if fmt == "saved_model":
        return "is a file; a saved_model export is a folder"
    if not head:  # an empty file holds nothing to lose
        return None
    if fmt == "tflite" and head[4:8] != TFLITE_IDENTIFIER:
        return "is a file that is not a TFLite model"
    if fmt == "onnx" and (not name.endswith(".onnx") or head[:1] != ONNX_FIRST_BYTE):
        return "is a file that is not an ONNX model"
    return None


def refuse_foreign_target(fmt: str, where: str, why: str | None) -> None:
    """Exit 2 naming what an export would have replaced, when it is not an earlier export of the format."""
    if why is not None:
        raise ConfigError(
            Problem(
                key="--output",
                message=f"{why}: an export replaces its target whole",
                file=where,
                hint="choose a new or empty place with -o",
            )
        )


def check_local_target(path: Path, fmt: str) -> None:
    """Refuse a local export target that holds something else than an earlier export of `fmt` (nothing is read when it is new)."""
    if path.is_dir():
        refuse_foreign_target(fmt, str(path), not_an_artifact(fmt, path.name, os.listdir(path), None))
    elif path.exists():
        with open(path, "rb") as file:
            refuse_foreign_target(fmt, str(path), not_an_artifact(fmt, path.name, None, file.read(8)))


def check_remote_target(url: str, fmt: str) -> None:
    """Refuse a remote export target (gs://…) that holds something else than an earlier export of `fmt`."""
    if tf.io.gfile.isdir(url):
        entries = [entry.rstrip("/") for entry in tf.io.gfile.listdir(url)]  # some filesystems mark folders with a slash
        refuse_foreign_target(fmt, url, not_an_artifact(fmt, url.rstrip("/").rsplit("/", 1)[-1], entries, None))
    elif tf.io.gfile.exists(url):
        with tf.io.gfile.GFile(url, "rb") as file:
            refuse_foreign_target(fmt, url, not_an_artifact(fmt, url.rsplit("/", 1)[-1], None, file.read(8)))


def write_artifact(model: Any, fmt: str, path: Path, check: Callable[[Path], float | None]) -> float | None:
    """Export into a temporary sibling, check it, then rename it into place (an earlier export is replaced whole); check's result.

    The caller has refused a target that is no earlier export (check_local_target), before the model loaded.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as exc:
        raise ConfigError(
            Problem(
                key="--output", message=f"cannot write there: {exc.strerror}", file=str(path.parent), hint="choose another place with -o"
            )
        ) from None
    try:
        staged = scratch / DEFAULT_NAME[fmt]  # with the suffix Keras would otherwise append
        convert(model, fmt, staged)
        if fmt == "onnx":
            refuse_unsupported_onnx(staged)
        diff = check(staged)  # a wrong artifact never takes the place of a good one
        if path.is_dir() and not path.is_symlink():
            old = scratch / ".replaced"
            os.replace(path, old)  # a directory can't be replaced in one rename: move the old one aside first
        os.replace(staged, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return diff


@contextlib.contextmanager
def quiet_converters() -> Iterator[None]:
    """File descriptor 2 parked and the converters' loggers hushed while Keras exports.

    TFLite's MLIR converter prints every op it can't convert with its graph location from C++, and
    tf2onnx logs each unsupported op with a traceback; the error kerasrun raises names the ops once.
    """
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's NumPy 2 shim warns on import; nothing the user can act on
        os.dup2(parked.fileno(), 2)
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def convert(model: Any, fmt: str, staged: Path) -> None:
    """Keras's exporter into `staged`; a TFLite model that needs TensorFlow Select ops is exit 2 naming them."""
    kwargs: dict[str, Any] = {}
    if fmt == "tflite":
        # Builtins only: Keras adds SELECT_TF_OPS, whose artifact needs the Flex delegate, which TensorFlow's
        # tf.lite.Interpreter doesn't have ("Select TensorFlow op(s) ... not supported by this interpreter").
        kwargs["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    try:
        with quiet_converters():
            model.export(str(staged), format=KERAS_FORMAT[fmt], verbose=False, **kwargs)
    except Exception as exc:  # a converter's own errors (TFLite, tf2onnx): nothing was written
        select = re.search(r"TF Select ops: ([^\n]+)", str(exc))
        # Keras 3's LSTM/GRU loop over tensor lists, which the converter lowers to builtins only for some graphs.
        lists = "tensor list ops" in str(exc)
        if fmt == "tflite" and (select or lists):
            what = select.group(1).strip() if select else "the tensor-list ops of its recurrent loop"
            raise ExportUnavailableError(
                Problem(
                    key="--format",
                    message=f"tflite can't hold this model: TFLite's builtin ops have no {what}"
                    " (TensorFlow Select ops would need the Flex delegate, which TensorFlow's TFLite interpreter lacks)",
                    hint="export a SavedModel (--format saved_model)",
                )
            ) from None
        raise ExportFailedError(f"Keras could not export the model as {fmt}: {type(exc).__name__}: {first_line(exc)}") from exc


def refuse_unsupported_onnx(path: Path) -> None:
    """Exit 2 when tf2onnx left TensorFlow ops in the graph that no ONNX opset defines (it writes them and only logs)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    nodes = [*proto.graph.node, *(node for function in proto.functions for node in function.node)]
    missing = sorted({node.op_type for node in nodes if not onnx.defs.has(node.op_type, node.domain)})
    if missing:
        raise ExportUnavailableError(
            Problem(
                key="--format",
                message=f"onnx can't hold this model: tf2onnx has no ONNX op for {', '.join(missing)}",
                hint="export a SavedModel (--format saved_model)",
            )
        )


def run_artifact(path: Path, fmt: str, raw: Features, outputs: list[str]) -> list[np.ndarray]:
    """The artifact's predictions for `raw`, one array per output in the model's order, through the runtime a server would use."""
    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(path))
        return as_outputs(loaded.serve(model_feed(raw)), outputs)
    if fmt == "tflite":
        return tflite_outputs(path, raw)
    import onnxruntime  # verified only when installed (see check_artifact)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [entry.name for entry in session.get_inputs()]
    feed = {name: raw[name] for name in names} if isinstance(raw, dict) else {names[0]: raw}
    return [np.asarray(out) for out in session.run(None, feed)]


def tflite_outputs(path: Path, raw: Features) -> list[np.ndarray]:
    """Predictions from TensorFlow's TFLite interpreter through its serving signature (inputs by name, any batch), in output order."""
    with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to ai_edge_litert
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    (key,) = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner(key)
    names = interpreter.get_signature_list()[key]["inputs"]
    got = runner(**(raw if isinstance(raw, dict) else {names[0]: raw}))

    def position(name: str) -> tuple[int, str]:
        number = re.fullmatch(r"output_(\d+)", name)  # Keras's names for a list of outputs: output_10 after output_9
        return (int(number.group(1)) if number else 0, name)

    return [np.asarray(got[name]) for name in sorted(got, key=position)]


def run_tflite(path: Path, raw: Features) -> np.ndarray:
    """The only output of a one-output TFLite model (see tflite_outputs)."""
    (only,) = tflite_outputs(path, raw)
    return only
