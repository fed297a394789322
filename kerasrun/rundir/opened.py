"""Open ONE run folder: run.json and config.yaml read once, its status as a reader should see it, its signature checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerasrun.config.load import load_config_text
from kerasrun.config.schema import Config
from kerasrun.config.yamlsource import MAX_BYTES
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.io import RunFileError, present, read_json, read_run_file
from kerasrun.rundir.layout import CONFIG_FILE, RUN_FILE
from kerasrun.rundir.liveness import effective_status, resume_blocker, resume_command, status_phrase
from kerasrun.rundir.record import write_signed
from kerasrun.rundir.trust import config_digest, require_trusted


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """A run folder's run.json, or a ConfigError saying why the folder is not a readable run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ConfigError(Problem(key="", message="no such folder", file=str(run_dir)))
    if run_dir.is_file():
        hint = f"to train it: kerasrun train {run_dir}" if run_dir.suffix in (".yaml", ".yml") else None
        raise ConfigError(Problem(key="", message="is a file; a run folder is expected", file=str(run_dir), hint=hint))
    if not present(run_dir / RUN_FILE) or not present(run_dir / CONFIG_FILE):
        raise ConfigError(Problem(key="", message="not a kerasrun run folder (no run.json / config.yaml)", file=str(run_dir)))
    info = read_json(run_dir / RUN_FILE)  # RunFileError, located at run.json, when it can't be read (a FIFO, a device, …)
    if not isinstance(info, dict):
        raise RunFileError(Problem(key="", message="run.json is not a JSON object", file=str(run_dir / RUN_FILE)))
    return info


@dataclass
class OpenedRun:
    """A run folder whose run.json and config.yaml were read once and checked together."""

    run_dir: Path
    info: dict[str, Any]
    status: str  # run.json's status, `crashed` for a `running` run whose process is gone

    config_text: str

    def config(self, overrides: list[str] | None = None) -> Config:
        """The config from the very bytes that were verified (not a second read a swapped file could change)."""
        return load_config_text(self.config_text, self.run_dir / CONFIG_FILE, overrides)


def open_run(run_dir: Path, trust: bool = False) -> OpenedRun:
    """A run folder this user's kerasrun signed (or that the user trusts); UntrustedRunError otherwise."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    raw = read_run_file(run_dir / CONFIG_FILE, MAX_BYTES)  # a regular file of a config's size (the loader bounds the rest)
    require_trusted(run_dir, info, raw, trust)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(key="", message=f"config.yaml is not UTF-8 text: {exc}", file=str(run_dir))) from None
    return OpenedRun(run_dir, info, effective_status(info, run_dir), text)


def require_completed(run: OpenedRun) -> None:
    """Refuse a run that did not complete: its model is missing or not the trained one."""
    run_dir, info, status = run.run_dir, run.info, run.status
    if status == "completed":
        return
    epochs = info.get("epochs_completed")
    done = f" after {epochs} epoch{'s' if epochs != 1 else ''}" if isinstance(epochs, int) else ""
    hint = None
    if status in ("interrupted", "crashed", "failed", "pruned"):  # a pruned trial resumes to its planned epochs (train.restart.CONTINUED)
        blocker = resume_blocker(run_dir, info)
        hint = f"continue it with {resume_command(run_dir, info)}" if blocker is None else f"it can't be resumed: {blocker}"
    if status == "running":
        hint = f"it is still training (pid {info.get('pid')} on {info.get('host')})"
    raise ConfigError(
        Problem(key="", message=f"the run {status_phrase(status)}{done}; only a completed run has its model", file=str(run_dir), hint=hint)
    )


def sign_run(run_dir: Path, info: dict[str, Any], config_text: bytes) -> None:
    """Adopt a run folder: bind `config_text` (its config.yaml as shown to the user) to its run.json, signed with this user's key."""
    write_signed(Path(run_dir) / RUN_FILE, dict(info, config_sha256=config_digest(config_text)))
