"""A multi-worker run's cluster: what run.json records about it, and the check that a resume runs on the same one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasrun.errors import ConfigError, Problem
from kerasrun.train.launch import LAUNCH_ENV, LAUNCHER

if TYPE_CHECKING:  # `kerasrun resume` decides whether to relaunch before TensorFlow is imported
    from kerasrun.train.devices import Placement
# How run.json names the source of the cluster, by tf.distribute's resolver class.
RESOLVERS = {
    "TFConfigClusterResolver": "TF_CONFIG",
    "SlurmClusterResolver": "Slurm",
    "KubernetesClusterResolver": "Kubernetes",
    "GCEClusterResolver": "GCE",
}


def describe_cluster(placement: Placement, train: Any = None) -> dict[str, Any] | None:
    """run.json's `cluster`: worker count, this task, the resolver, how the training data is sharded, and whether `kerasrun launch` started it.

    None on one process. `train` is the training split: a worker reads its own files of a TFRecord
    source with enough of them (`data_sharding: file`), else every row's reader takes its share (`data`).
    """
    from kerasrun.data.stream import worker_share  # with TensorFlow: a training process's

    resolver = getattr(placement.strategy, "cluster_resolver", None)
    if resolver is None:
        return None
    jobs = resolver.cluster_spec().as_dict()
    workers = sum(len(jobs.get(job, [])) for job in ("chief", "worker"))  # the tasks MultiWorkerMirroredStrategy trains on
    name = type(resolver).__name__
    cluster: dict[str, Any] = {
        "workers": workers,
        "task_type": resolver.task_type,
        "task_index": int(resolver.task_id or 0),
        "resolver": RESOLVERS.get(name, name),
        "data_sharding": "file" if worker_share(train, placement.peers) is not None else "data",
    }
    if os.environ.get(LAUNCH_ENV):
        cluster["launcher"] = LAUNCHER  # `kerasrun resume` starts as many local workers again
    return cluster


def tf_config_workers() -> int | None:
    """How many workers TF_CONFIG's cluster has (its chief and worker tasks), read before any strategy waits for them; None without one."""
    try:
        jobs = json.loads(os.environ.get("TF_CONFIG") or "null")["cluster"]
        return sum(len(jobs.get(job) or []) for job in ("chief", "worker"))
    except (ValueError, TypeError, KeyError, AttributeError):  # none, or malformed: the placement says what is wrong
        return None


def check_same_cluster(run_dir: Path, info: dict[str, Any], workers: int | None, replicas: int | None = None) -> None:
    """Refuse to resume a multi-worker run on a different number of workers or replicas (exit 2), saying why; None: not known yet."""
    recorded, placed = info.get("cluster"), info.get("placement")
    was = {
        "workers": recorded.get("workers") if isinstance(recorded, dict) else None,
        "replicas": placed.get("replicas") if isinstance(placed, dict) else None,
    }
    now = {"workers": workers, "replicas": replicas}
    changed = [key for key in ("workers", "replicas") if isinstance(was[key], int) and isinstance(now[key], int) and was[key] != now[key]]
    if not changed:
        return

    def said(side: dict[str, Any]) -> str:
        counts = [f"{side[key]} {key}" for key in ("workers", "replicas") if isinstance(side[key], int)]
        return f"{counts[0]} ({counts[1]})" if len(counts) == 2 else counts[0]

    raise ConfigError(
        Problem(
            key="runtime.strategy",
            file=str(run_dir),
            message=(
                f"the run trained on {said(was)}, this cluster has {said(now)}: each global batch is split over the replicas "
                "and their gradients summed, so with another count every step to come would compute other numbers"
            ),
            hint=f"resume it on {said(was)} (or start a new run from its weights: model.init_from)",
        )
    )
