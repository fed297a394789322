"""Paths with a scheme (`gs://`, `s3://`, `hdfs://`, `ram://`): recognised without TensorFlow, read and written through tf.io.gfile.

A URL is never a local path: `Path("gs://b/x")` would collapse to `gs:/b/x` and make a folder `gs:`
here, so a path key with a scheme stays a string. TensorFlow is imported only by the functions
that touch such a path (`validate` and `runs` of local folders never import it).

A run folder on a remote runs dir is worked on in a local mirror and published with gfile: after
every epoch (its checkpoint, history, run.json) and when the run ends, each changed file is written
to a temp name beside it and renamed over the old one (gfile's rename with overwrite), so a reader
of the remote folder sees whole files. A lock cannot be held on an object store: a remote run
folder counts as alive while its run.json says `running` with a heartbeat newer than
`rundir.liveness`'s staleness limit, as for a run folder another host trains (see docs/run-folder.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kerasrun.config.urls import join, scheme, url_of
from kerasrun.errors import ConfigError, Problem


def unsupported(url: str) -> str | None:
    """Why TensorFlow cannot read or write `url` (no filesystem registered for its scheme), or None when it can."""
    from kerasrun._tf import tf

    try:
        try:
            tf.io.gfile.exists(url)
        except tf.errors.UnimplementedError:
            if not register_plugins():
                raise
            tf.io.gfile.exists(url)  # s3://, hdfs://, az:// once tensorflow-io has registered them
    except tf.errors.UnimplementedError:
        hint = " (s3:// and hdfs:// need `pip install tensorflow-io`)" if scheme(url) in ("s3", "hdfs", "az") else ""
        return f"no filesystem for `{scheme(url)}://` is registered in TensorFlow{hint}"
    except tf.errors.OpError as exc:
        return f"cannot be reached: {exc.message}"
    return None


def register_plugins() -> bool:
    """Import tensorflow-io when it is installed (importing it registers its filesystems: s3, hdfs, az, …); whether it was."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("tensorflow_io") is None:
        return False
    try:
        importlib.import_module("tensorflow_io")
    except Exception:  # built for another TensorFlow: its filesystems are not there, which the caller says
        return False
    return True


def exists(url: str) -> bool:
    """Whether a file or folder is at `url`."""
    from kerasrun._tf import tf

    return bool(tf.io.gfile.exists(url))


def is_dir(url: str) -> bool:
    """Whether `url` is a folder."""
    from kerasrun._tf import tf

    return bool(tf.io.gfile.isdir(url))


def glob(pattern: str) -> list[str]:
    """The files matching a glob on a filesystem of TensorFlow's, sorted."""
    from kerasrun._tf import tf

    return sorted(p for p in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(p))


def read_bytes(url: str) -> bytes:
    """The bytes of the file at `url`."""
    from kerasrun._tf import tf

    with tf.io.gfile.GFile(url, "rb") as f:
        return bytes(f.read())


def write_bytes(url: str, data: bytes) -> None:
    """Write a file at `url` whole: to a temp name beside it, then renamed over it (readers never see half a file)."""
    from kerasrun._tf import tf

    parent = url.rsplit("/", 1)[0]
    tf.io.gfile.makedirs(parent)
    tmp = f"{parent}/.{url.rsplit('/', 1)[1]}.{os.getpid()}.tmp"
    if tf.io.gfile.exists(tmp):  # left by a write that failed: TensorFlow's ram:// appends to a file it opens with "wb"
        tf.io.gfile.remove(tmp)
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, url, overwrite=True)


def download_tree(url: str, local: Path, only: tuple[str, ...] | None = None) -> Path:
    """Copy the file or folder at `url` to `local` (a folder's files recursively; `only`: just these top-level names)."""
    from kerasrun._tf import tf

    if not tf.io.gfile.isdir(url):
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(read_bytes(url))
        return local
    local.mkdir(parents=True, exist_ok=True)
    for folder, _, files in tf.io.gfile.walk(url):
        relative = folder[len(url.rstrip("/")) :].strip("/")
        if only is not None and relative and relative.split("/")[0] not in only:
            continue
        (local / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            if only is not None and not relative and name not in only:
                continue
            (local / relative / name).write_bytes(read_bytes(join(folder, name)))
    return local


def upload_tree(local: Path, url: str, sent: dict[str, tuple[int, int]] | None = None) -> None:
    """Publish the folder `local` at `url`: each file new or changed since `sent` (path → size, mtime) written whole, the rest left.

    Files that are gone locally (a checkpoint `keep` dropped) are deleted remotely too; temp files are never sent.
    """
    from kerasrun._tf import tf

    sent = sent if sent is not None else {}
    if not local.is_dir():  # removed as a half-made folder: nothing to publish, no empty remote folder either
        return
    present: set[str] = set()
    for path in sorted(local.rglob("*")):
        if not path.is_file() or path.name.endswith(".tmp") or path.name.startswith(".model.tmp") or path.name == ".lock":
            continue
        relative = path.relative_to(local).as_posix()
        present.add(relative)
        info = path.stat()
        stamp = (info.st_size, info.st_mtime_ns)
        if sent.get(relative) != stamp:
            write_bytes(join(url, relative), path.read_bytes())
            sent[relative] = stamp
    tf.io.gfile.makedirs(url)
    for relative in sorted(set(sent) - present):
        target = join(url, relative)
        if tf.io.gfile.exists(target):
            tf.io.gfile.remove(target)
        del sent[relative]


def local_copy(url: str, only: tuple[str, ...] | None = None) -> Path:
    """A local copy of the file or folder at `url`, in a temp folder this process removes when it exits."""
    folder = Path(tempfile.mkdtemp(prefix="kerasrun-remote-"))
    remove_at_exit(folder)
    return download_tree(url, folder / (url.rstrip("/").rsplit("/", 1)[-1] or "root"), only)


KEPT: set[Path] = set()  # temp folders holding the only copy of what could not be published: never removed


def remove_at_exit(folder: Path) -> None:
    """Remove `folder` when the process ends (unless it was kept)."""
    import atexit

    atexit.register(remove_unless_kept, folder)


def remove_unless_kept(folder: Path) -> None:
    """Remove a temp folder, unless it holds what could not be published."""
    if folder not in KEPT:
        shutil.rmtree(folder, ignore_errors=True)


def config_urls(config: Any, runs_dir: str | Path | None = None) -> list[tuple[tuple[str, ...] | str, str]]:
    """Every path of the config (and --runs-dir) that has a scheme, with the dotted key (or option) naming it."""
    found: list[tuple[tuple[str, ...] | str, str]] = []
    data = config.data
    for key in type(data).PATH_FIELDS:
        value = getattr(data, key, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and (url := url_of(item)):
                found.append((("data", key), url))
    init_from = config.model.init_from
    if init_from is not None and (url := url_of(getattr(init_from, "path", None))):
        found.append((("model", "init_from", "path"), url))
    option = url_of(runs_dir) if runs_dir is not None else None
    if option:
        found.append(("--runs-dir", option))
    elif runs_dir is None and (url := url_of(config.output.runs_dir)):
        found.append((("output", "runs_dir"), url))
    return found


def check_config_urls(config: Any, runs_dir: str | Path | None = None) -> None:
    """A located ConfigError (exit 2) for a path whose scheme TensorFlow has no filesystem for, or whose data is missing.

    Runs where TensorFlow is loaded, before any run folder is made.
    """
    problems = []
    for key, url in config_urls(config, runs_dir):
        why = unsupported(url)
        is_output = key in ("--runs-dir", ("output", "runs_dir"))
        if why is None and not is_output:
            matches = glob(url) if any(c in url for c in "*?[") else ([url] if exists(url) else [])
            why = None if matches else f"no file matches {url}"
        if why is None:
            continue
        hint = "use a scheme TensorFlow's tf.io.gfile supports (gs://, or s3:// / hdfs:// with tensorflow-io), or a local path"
        if isinstance(key, str):
            problems.append(Problem(key=key, message=f"{url}: {why}", hint=hint))
        else:
            problems.append(config.problem(key, f"{url}: {why}", hint))
    if problems:
        raise ConfigError(problems)


MIRRORS: dict[Path, str] = {}  # local mirror → the remote run folder it is published to, for messages


def shown(run_dir: Path | str) -> str:
    """How to name a run folder to the user: a local mirror by its remote URL."""
    return MIRRORS.get(Path(run_dir), str(run_dir)) if not isinstance(run_dir, str) or not url_of(run_dir) else run_dir


class Mirror:
    """A local run folder published to a remote one: on `publish()`, and every HEARTBEAT_SECONDS while open (run.json's heartbeat)."""

    def __init__(self, local: Path, url: str) -> None:
        import threading

        self.local, self.url = Path(local), url
        self.sent: dict[str, tuple[int, int]] = {}
        self.failures: list[str] = []  # publishes that failed (and were retried by the next one), to say at the end
        self.lock = threading.Lock()  # the heartbeat thread and an epoch's end never publish at once
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="kerasrun-publish", daemon=True)
        MIRRORS[self.local] = url

    def stamps(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of every local file now: a mirror fetched from the store need not send them back."""
        return {
            p.relative_to(self.local).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in self.local.rglob("*") if p.is_file()
        }

    def publish(self) -> None:
        """Send what changed in the local folder since the last publish."""
        with self.lock:
            upload_tree(self.local, self.url, self.sent)

    def beat(self) -> None:
        """Publish every HEARTBEAT_SECONDS until closed, so another host sees the heartbeat; a failed one is retried next time."""
        from kerasrun.rundir.liveness import HEARTBEAT_SECONDS

        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.publish()
            except Exception as exc:  # an unreachable store now: the next beat, an epoch's end or the close sends it
                self.failures.append(f"heartbeat: {exc}")

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()
        try:
            self.publish()
        except BaseException:
            KEPT.add(self.local.parent)  # the local copy is now the only whole one: left for the user to copy
            raise
        shutil.rmtree(self.local, ignore_errors=True)  # the remote folder is the run folder; the copy held nothing more


def new_remote_run_dir(runs_url: str, name: str) -> tuple[Path, str]:
    """A new run folder for a remote runs dir: made in a local mirror, under a name not taken remotely; (local, url)."""
    from kerasrun.rundir.record import create_run_dir

    base = Path(tempfile.mkdtemp(prefix="kerasrun-mirror-"))
    remove_at_exit(base)
    taken = set()
    while True:
        local = create_run_dir(base, name)
        if not exists(join(runs_url, local.name)) and local.name not in taken:
            return local, join(runs_url, local.name)
        taken.add(local.name)  # kept locally: the next one gets the -N create_run_dir gives a taken name


def local_run_dir(target: str, what: str, skip: tuple[str, ...] = ()) -> Path:
    """A local copy of the remote run folder `target` (without the top-level folders in `skip`); ConfigError when it can't be had."""
    why = unsupported(target)
    if why is None and not is_dir(target):
        why = "no such run folder"
    if why is not None:
        raise ConfigError(Problem(key=what, message=f"{target}: {why}"))
    from kerasrun._tf import tf

    names = tuple(n.rstrip("/") for n in tf.io.gfile.listdir(target) if n.rstrip("/") not in skip)
    local = local_copy(target, only=names)
    MIRRORS[local] = target
    return local


LISTED_FILES = ("run.json", "config.yaml", "history.json", "metrics.json", "sweep.json")  # what `runs` reads of a folder


def local_runs_listing(runs_url: str, what: str, top: bool = False) -> Path:
    """A local copy of what `kerasrun runs` reads of each run folder under a remote runs dir (their JSON and config, no weights).

    `top`: `runs_url` is itself a run (or sweep) folder, which must exist; its copy keeps its name (`compare` shows it).
    """
    from kerasrun._tf import tf

    why = unsupported(runs_url)
    if why is not None:
        raise ConfigError(Problem(key=what, message=f"{runs_url}: {why}"))
    folder = Path(tempfile.mkdtemp(prefix="kerasrun-remote-"))
    remove_at_exit(folder)
    local = folder / (runs_url.rstrip("/").rsplit("/", 1)[-1] if top else "runs")
    local.mkdir()
    if not tf.io.gfile.isdir(runs_url):
        if top:
            raise ConfigError(Problem(key=what, message=f"{runs_url}: no such run folder"))
        return local
    for here, dirs, files in tf.io.gfile.walk(runs_url):
        relative = here[len(runs_url.rstrip("/")) :].strip("/")
        dirs[:] = [d for d in dirs if d.rstrip("/") not in ("checkpoints", "cache", "tensorboard", "export")]
        for name in files:
            if name in LISTED_FILES:
                (local / relative).mkdir(parents=True, exist_ok=True)
                (local / relative / name).write_bytes(read_bytes(join(here, name)))
    return local


def publish_artifact(local: Path, url: str) -> None:
    """Copy an exported file or folder to `url`, replacing what was there (a folder's files each written whole)."""
    from kerasrun._tf import tf

    if local.is_dir():
        if tf.io.gfile.exists(url):
            tf.io.gfile.rmtree(url)  # an object store has no folder rename: the old export goes, then the new one's files
        upload_tree(local, url)
    else:
        write_bytes(url, local.read_bytes())
