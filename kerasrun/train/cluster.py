"""Where a multi-worker run's cluster comes from: TF_CONFIG, or a Slurm job step (SlurmClusterResolver); which local GPUs a task takes.

Both are tf.distribute's own cluster resolvers. Under Slurm nobody writes TF_CONFIG: `srun` sets
SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST and SLURM_STEP_TASKS_PER_NODE for every task,
and TensorFlow's resolver makes the cluster of them (one address per task, ports from
KERASRUN_SLURM_PORT, default 8888, upwards on each node).
"""

from __future__ import annotations

import json
import os
from typing import Any, TypeVar

from kerasrun._tf import tf
from kerasrun.config.schema import Config
from kerasrun.errors import ConfigError

SLURM_STEP_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")
SLURM_PORT_ENV = "KERASRUN_SLURM_PORT"  # the first port of each node's tasks (TensorFlow's default: 8888)
Device = TypeVar("Device")


class SlurmClusterResolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
    """TensorFlow's Slurm resolver, for the cluster only: the GPUs a task trains on are kerasrun's choice (`gpus`).

    TensorFlow's own GPU allocation sets CUDA_VISIBLE_DEVICES, which is read once, when TensorFlow first
    lists the GPUs (already done by then), and can't express a node without GPUs (it steps through
    them). MultiWorkerMirroredStrategy asks `num_accelerators()` how many GPUs each worker trains on.
    The class keeps TensorFlow's name: run.json names the resolver by it.
    """

    def __init__(self, port_base: int) -> None:
        # As many "GPUs" per node as there can be tasks, one each: only so that TensorFlow's checks and cluster_spec() hold.
        super().__init__(port_base=port_base, gpus_per_node=1 << 20, gpus_per_task=1, auto_set_gpu=False)
        self.gpus = 0

    def num_accelerators(self, task_type: Any = None, task_id: Any = None, config_proto: Any = None) -> dict[str, int]:
        """The GPUs this task trains on (set once they are chosen)."""
        return {"GPU": self.gpus}


def slurm_step() -> bool:
    """Whether this process is a task of a Slurm job step (`srun`), with the variables SlurmClusterResolver reads."""
    return all(os.environ.get(name) for name in SLURM_STEP_VARIABLES)


def resolve_cluster(config: Config) -> Any:
    """The cluster resolver for multi_worker: TF_CONFIG's when it is set, else the Slurm job step's; ConfigError when neither is there."""
    loc = ("runtime", "strategy")
    if os.environ.get("TF_CONFIG") or not os.environ.get("SLURM_JOB_ID"):
        read_tf_config(config)  # says what is wrong with it, or that it is missing
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not slurm_step():
        missing = [name for name in SLURM_STEP_VARIABLES if not os.environ.get(name)]
        raise ConfigError(
            config.problem(
                loc,
                f"multi_worker in Slurm job {os.environ['SLURM_JOB_ID']} needs a job step: {', '.join(missing)} not set",
                "start every worker with `srun kerasrun train ...` (one task per node), or set TF_CONFIG",
            )
        )
    try:
        port = int(os.environ.get(SLURM_PORT_ENV, "8888"))
        resolver = SlurmClusterResolver(port_base=port)
        resolver.cluster_spec()  # resolves the task's type and index too
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            config.problem(loc, f"the Slurm job's cluster can't be resolved: {exc}", f"check the SLURM_* variables and {SLURM_PORT_ENV}")
        ) from None
    return resolver


def share_local_gpus(gpus: list[Device], cluster: dict[str, list[str]], task_type: str, task_id: int) -> list[Device]:
    """The GPUs of this host that task (task_type, task_id) trains on: all of them, or its even share when several tasks run on the host.

    The tasks on one host are those whose addresses name the same host; with fewer GPUs than tasks
    (e.g. Slurm already gave each task its own, through CUDA_VISIBLE_DEVICES) each task takes one, in turn.
    """
    if not gpus:
        return []
    me = cluster[task_type][task_id]
    host = me.rsplit(":", 1)[0]
    here = [address for job in sorted(cluster) for address in cluster[job] if address.rsplit(":", 1)[0] == host]
    index, count = here.index(me), len(here)
    if len(gpus) < count:
        return [gpus[index % len(gpus)]]
    share = len(gpus) // count
    return gpus[index * share : (index + 1) * share]


def describe_resolver(resolver: Any, local_gpus: list[str]) -> dict[str, Any]:
    """What run.json's placement adds under multi_worker: the resolved cluster and the GPUs this task trains on.

    (run.json's own `cluster` names the resolver, the worker count and this task: train.workers.)
    """
    return {"cluster_spec": resolver.cluster_spec().as_dict(), "local_gpus": local_gpus}


def read_tf_config(config: Config) -> dict[str, Any]:
    """Parse and check TF_CONFIG for multi-worker training."""
    loc = ("runtime", "strategy")
    raw = os.environ.get("TF_CONFIG")
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not raw:
        raise ConfigError(
            config.problem(
                loc,
                "multi_worker needs the TF_CONFIG environment variable on every worker (or a Slurm job step)",
                f"e.g. TF_CONFIG='{example}', or `srun kerasrun train ...` under Slurm, or try it locally with `kerasrun launch --workers 2 CONFIG`",
            )
        )
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(config.problem(loc, f"TF_CONFIG is not valid JSON: {exc}", f"expected e.g. {example}")) from None
    cluster, task = parsed.get("cluster") if isinstance(parsed, dict) else None, parsed.get("task") if isinstance(parsed, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(
            config.problem(loc, "TF_CONFIG needs `cluster` (job -> addresses) and `task` ({type, index})", f"expected e.g. {example}")
        )
    jobs = cluster.get(task["type"])
    if not isinstance(jobs, list) or not (0 <= int(task["index"]) < len(jobs)):
        raise ConfigError(config.problem(loc, f"TF_CONFIG task {task} is not in the cluster {cluster}"))
    return parsed
