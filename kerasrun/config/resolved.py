"""The resolved config: defaults filled in, overrides applied, file paths made absolute, so a run folder stands on its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kerasrun.config.schema import Config


def config_to_yaml(config: Config, data_dir: Path | None = None) -> str:
    """The fully resolved config as YAML (defaults filled in, overrides applied, paths absolute)."""
    return yaml.safe_dump(resolved_dict(config, data_dir), sort_keys=False, allow_unicode=True)


def resolved_dict(config: Config, data_dir: Path | None = None) -> dict[str, Any]:
    """The config as plain data with file paths made absolute, so a run folder stands on its own."""
    out = config.model_dump(mode="json")
    data = out["data"]
    for key in type(config.data).PATH_FIELDS:
        value = data.get(key)
        if isinstance(value, list):  # globs of shards
            data[key] = [config.resolve_location(pattern) for pattern in value]
        elif isinstance(value, str) and value:
            data[key] = config.resolve_location(value)
    if data.get("source") == "keras" and data_dir is not None:
        data["dir"] = str(Path(data_dir).resolve())
    init_from = out["model"].get("init_from")
    if init_from and init_from.get("path"):
        init_from["path"] = config.resolve_location(init_from["path"])
    mlflow = out["output"].get("mlflow")
    if mlflow and mlflow.get("tracking_uri"):
        mlflow["tracking_uri"] = absolute_tracking_uri(config, mlflow["tracking_uri"])
    return out


LOCAL_URI = re.compile(r"^(?P<scheme>file:(?://)?|sqlite:///)(?P<path>.*)$")


def absolute_tracking_uri(config: Config, uri: str) -> str:
    """An MLflow tracking URI whose local path (a bare path, `file:`, `sqlite:///`) is made absolute against the config's folder.

    Remote URIs (http, databricks, ...) are left as they are; `file:///abs` and `sqlite:////abs` already are absolute.
    """
    if uri == "databricks" or uri.startswith("databricks"):
        return uri
    if not re.match(r"^[A-Za-z][\w+.-]*:", uri):
        return config.resolve_path(uri).resolve().as_uri()  # a bare path: a file store
    match = LOCAL_URI.match(uri)
    if match is None or match["path"].startswith("/") or (match["scheme"] == "file://" and match["path"]):
        return uri  # remote, absolute, or file://host/... (not a relative path)
    path = str(config.resolve_path(match["path"]).resolve())
    return f"sqlite:///{path}" if match["scheme"] == "sqlite:///" else Path(path).as_uri()
