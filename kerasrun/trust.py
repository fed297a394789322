"""Which run folders kerasrun may read code from: those it signed itself, with this user's secret key.

A run folder is data, like a pickle: its `config.yaml` can name any `module:name`, and `evaluate`,
`predict` and `resume` import what it names. So kerasrun follows the trust model of signed notebooks:
everything it writes into `run.json` is signed with an HMAC-SHA256 over the record and the exact bytes
of `config.yaml`, keyed by a per-user secret (created on first use, mode 0600, outside any repository).
A folder whose signature does not verify — made by someone else, or edited — is refused unless the
user says they trust it (`kerasrun trust RUN_DIR`, which signs it with their key, or `--trust`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from kerasrun.errors import ConfigError, Problem

HOME_ENV = "KERASRUN_HOME"
KEY_FILE = "secret.key"
SIGNATURE_FIELD = "signature"
ALGORITHM = "hmac-sha256"


class UntrustedRunError(ConfigError):
    """A run folder's signature is missing or does not verify; nothing from it was run."""


def kerasrun_home() -> Path:
    """Where this user's kerasrun state lives: $KERASRUN_HOME, else $XDG_CONFIG_HOME/kerasrun, else ~/.config/kerasrun."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "kerasrun"


def secret_key() -> bytes:
    """This user's signing key, created on first use (32 random bytes, a file only its owner can read)."""
    path = kerasrun_home() / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    except FileExistsError:  # another kerasrun process created it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def config_digest(config_text: bytes) -> str:
    """SHA-256 of the exact bytes of a run's config.yaml."""
    return hashlib.sha256(config_text).hexdigest()


def canonical(info: dict[str, Any]) -> bytes:
    """The bytes a signature covers: run.json's fields without the signature, keys sorted."""
    unsigned = {k: v for k, v in info.items() if k != SIGNATURE_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sign(info: dict[str, Any], key: bytes | None = None) -> str:
    """The signature of a run.json record (which holds the config's digest, so it covers config.yaml too)."""
    digest = hmac.new(key or secret_key(), canonical(info), hashlib.sha256).hexdigest()
    return f"{ALGORITHM}:{digest}"


def verify_run(run_dir: Path, info: dict[str, Any]) -> str | None:
    """None when run.json's signature is this user's and config.yaml is the one it signed; else why not."""
    signature = info.get(SIGNATURE_FIELD)
    if not isinstance(signature, str):
        return "it carries no kerasrun signature (made by another tool, or by a kerasrun before 0.2)"
    if not hmac.compare_digest(signature, sign(info)):
        return "its run.json was not signed with your key (made by someone else, or edited)"
    try:
        text = (Path(run_dir) / "config.yaml").read_bytes()
    except OSError as exc:
        return f"its config.yaml cannot be read ({exc.strerror})"
    if info.get("config_sha256") != config_digest(text):
        return "its config.yaml was edited after kerasrun wrote it"
    return None


def require_trusted(run_dir: Path, info: dict[str, Any], trust: bool = False) -> None:
    """Raise UntrustedRunError unless the folder verifies or the user said `--trust`."""
    if trust:
        return
    reason = verify_run(run_dir, info)
    if reason is not None:
        raise UntrustedRunError(
            Problem(
                key="",
                file=str(run_dir),
                message=f"not trusted: {reason}; kerasrun runs no code from it",
                hint=f"if you trust whoever made it, read its config.yaml, then `kerasrun trust {run_dir}` (or add --trust)",
            )
        )
