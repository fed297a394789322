"""Which run folders kerasrun may read code from: those it signed itself, with this user's secret key.

A run folder is data, like a pickle: its `config.yaml` can name any `module:name`, and `evaluate`,
`predict` and `resume` import what it names. So kerasrun follows the trust model of signed notebooks:
everything it writes into `run.json` is signed with an HMAC-SHA256 over the record and the exact bytes
of `config.yaml`, keyed by a per-user secret (created on first use, mode 0600, outside any repository).
A folder whose signature does not verify — made by someone else, or edited — is refused unless the
user says they trust it (`kerasrun trust RUN_DIR`, which signs it with their key, or `--trust`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from kerasrun.errors import ConfigError, KerasrunError, Problem

HOME_ENV = "KERASRUN_HOME"
KEY_FILE = "secret.key"
SIGNATURE_FIELD = "signature"
KEY_BYTES = 32
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
    """This user's signing key, created on first use: 32 random bytes in a file only its owner can read.

    It is written to a temp file first and linked into place, so a concurrent process never reads a
    half-written (or empty) key.
    """
    path = kerasrun_home() / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process linked its key first: use that one
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(path, str(exc)) from None
    if len(key) != KEY_BYTES:
        raise SigningKeyError(path, f"it holds {len(key)} bytes, not {KEY_BYTES}")
    return key


class SigningKeyError(KerasrunError):
    """The signing key file is unreadable or damaged: nothing can be verified with it."""

    exit_code = 2

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"the signing key {path} is unusable ({why}); delete it to make a new one "
            "(run folders signed with the old key will then need `kerasrun trust`)"
        )


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


def verify_run(info: dict[str, Any], config_text: bytes) -> str | None:
    """None when run.json's signature is this user's and `config_text` is the config.yaml it signed; else why not."""
    signature = info.get(SIGNATURE_FIELD)
    if not isinstance(signature, str):
        return "it carries no kerasrun signature (made by another tool, or by a kerasrun before 0.2)"
    try:
        expected = sign(info)
    except (TypeError, ValueError):  # NaN or values JSON can't hold: not a record kerasrun wrote
        return "its run.json holds values kerasrun never writes"
    if not hmac.compare_digest(signature, expected):
        return "its run.json was not signed with your key (made by someone else, or edited)"
    if info.get("config_sha256") != config_digest(config_text):
        return "its config.yaml was edited after kerasrun wrote it"
    return None


def require_trusted(run_dir: Path, info: dict[str, Any], config_text: bytes, trust: bool = False) -> None:
    """Raise UntrustedRunError unless the folder verifies (with these exact config bytes) or the user said `--trust`."""
    if trust:
        return
    reason = verify_run(info, config_text)
    if reason is not None:
        raise UntrustedRunError(
            Problem(
                key="",
                file=str(run_dir),
                message=f"not trusted: {reason}; kerasrun runs no code from it",
                hint=f"if you trust whoever made it, read its config.yaml, then `kerasrun trust {run_dir}` (or add --trust)",
            )
        )
