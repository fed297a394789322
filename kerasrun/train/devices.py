"""Device and tf.distribute strategy selection, done before TensorFlow initialises its devices."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from kerasrun._tf import tf
from kerasrun.config.schema import Config
from kerasrun.data.peers import ALONE, Peers, strategy_peers
from kerasrun.errors import ConfigError
from kerasrun.train.cluster import SlurmClusterResolver, describe_resolver, resolve_cluster, share_local_gpus
from kerasrun.train.signals import reclaim_signals

# Without GPUs, `mirrored` splits the CPU into this many logical devices (for trying data parallelism).
DEFAULT_LOGICAL_CPUS = 2


@dataclass
class Placement:
    """Where training runs: a device scope or a distribution strategy, and what to record in run.json."""

    device: str  # the device (or first device) used, e.g. /CPU:0
    strategy: Any = None  # a tf.distribute.Strategy, or None for plain single-device training
    devices: list[str] = field(default_factory=list)
    is_chief: bool = True  # multi-worker: only the chief writes the run folder
    cluster: dict[str, Any] | None = None  # multi-worker: the resolved cluster and this task's local GPUs
    peers: Peers = ALONE  # multi-worker: the workers reading the data together (this one's input pipeline id, how many)

    @property
    def replicas(self) -> int:
        """How many replicas share each global batch."""
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    def scope(self) -> Any:
        """The context to build, compile and train in."""
        return self.strategy.scope() if self.strategy is not None else tf.device(self.device)

    def describe(self) -> dict[str, Any]:
        """What run.json records about placement."""
        return {
            "device": self.device,
            "devices": self.devices,
            "strategy": type(self.strategy).__name__ if self.strategy else None,
            "replicas": self.replicas,
            **(self.cluster or {}),
        }


def requested_devices(config: Config) -> list[str]:
    """runtime.device as a list of `cpu`, `gpu`, `gpu:N` and `auto` entries."""
    device = config.runtime.device
    return device if isinstance(device, list) else [device]


def select_placement(config: Config) -> Placement:
    """Make the chosen devices visible, create the strategy, and check the batch fits the replicas."""
    runtime = config.runtime
    if runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    visible = [d.name for d in tf.config.list_physical_devices()]
    wanted = requested_devices(config)
    loc = ("runtime", "device")
    resolver = resolve_cluster(config) if runtime.strategy == "multi_worker" else None  # TF_CONFIG's or the Slurm step's
    if wanted == ["cpu"] or (wanted == ["auto"] and not gpus):
        chosen_gpus: list[Any] = []
    elif wanted == ["auto"] and resolver is not None:  # every GPU of the host, shared out among its workers
        chosen_gpus = share_local_gpus(gpus, resolver.cluster_spec().as_dict(), resolver.task_type, int(resolver.task_id))
    elif wanted == ["auto"]:
        chosen_gpus = gpus if runtime.strategy == "mirrored" else gpus[:1]
    else:
        chosen_gpus = []
        for entry in wanted:
            if entry == "cpu":
                raise ConfigError(config.problem(loc, "`cpu` cannot be combined with GPUs in a device list"))
            index = int(entry.split(":")[1]) if ":" in entry else 0
            if index >= len(gpus):
                what = "no GPU is visible" if not gpus else f"GPU {index} does not exist"
                raise ConfigError(config.problem(loc, f"{what}; visible devices: {', '.join(visible)}", "use device: cpu or auto"))
            chosen_gpus.append(gpus[index])
    set_visible_gpus(chosen_gpus)
    for gpu in chosen_gpus:
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)  # don't take all GPU memory up front
    kind = "GPU" if chosen_gpus else "CPU"
    if resolver is not None:
        # Collective ops must be configured before anything initialises TensorFlow's runtime.
        placement = make_multi_worker(resolver, kind, [gpu.name for gpu in chosen_gpus])
        check_batch(config, placement)
        return placement
    if runtime.strategy == "mirrored" and not chosen_gpus:
        split_cpu(runtime.logical_cpus or DEFAULT_LOGICAL_CPUS)
    elif runtime.logical_cpus:
        split_cpu(runtime.logical_cpus)
    placement = make_strategy(config, kind, logical_names(kind))
    check_batch(config, placement)
    return placement


def logical_names(kind: str) -> list[str]:
    """Names of the logical devices of a kind, e.g. ['/job:localhost/replica:0/task:0/device:CPU:0', ...]."""
    return [d.name for d in tf.config.list_logical_devices(kind)]


def make_strategy(config: Config, kind: str, names: list[str]) -> Placement:
    """The tf.distribute strategy named by runtime.strategy, over the visible devices of `kind`."""
    strategy_name = config.runtime.strategy
    first = f"/{kind}:0"
    if strategy_name == "none":
        return Placement(first, None, [first])
    if strategy_name == "one_device":
        return Placement(first, tf.distribute.OneDeviceStrategy(first), [first])
    return Placement(first, tf.distribute.MirroredStrategy(devices=names), names)


def make_multi_worker(resolver: Any, kind: str, local_gpus: list[str]) -> Placement:
    """MultiWorkerMirroredStrategy over `resolver`'s cluster; the chief is task `chief`, or worker 0 when there is none."""
    if isinstance(resolver, SlurmClusterResolver):
        resolver.gpus = len(local_gpus)  # what each worker trains on: the strategy asks the resolver
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    # Its coordination service installs TensorFlow's own SIGTERM notifier (tsl::SigtermNotifier), which
    # would swallow the preemption signal: kerasrun's handler marks the run and checkpoints instead.
    reclaim_signals()
    jobs = resolver.cluster_spec().as_dict()
    task_type, index = resolver.task_type, int(resolver.task_id)
    is_chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in jobs)
    cluster = describe_resolver(resolver, local_gpus)
    # The input pipeline ids tf.distribute gives the workers (distribute_datasets_from_function's InputContext): chief first.
    count = len(jobs.get("chief", [])) + len(jobs.get("worker", []))
    pipeline = 0 if task_type == "chief" else index + (1 if "chief" in jobs else 0)
    peers = strategy_peers(strategy, pipeline, count)
    return Placement(f"/{kind}:0", strategy, logical_names(kind), is_chief=is_chief, cluster=cluster, peers=peers)


def check_batch(config: Config, placement: Placement) -> None:
    """With several replicas, the global batch must split evenly."""
    replicas = placement.replicas
    if replicas > 1 and config.train.batch_size % replicas:
        raise ConfigError(
            config.problem(
                ("train", "batch_size"),
                f"the global batch {config.train.batch_size} does not split evenly over {replicas} replicas",
                f"use a multiple of {replicas}",
            )
        )


def split_cpu(count: int) -> None:
    """Split the physical CPU into `count` logical devices (a no-op once TensorFlow has initialised)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    with contextlib.suppress(RuntimeError):
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])


def set_visible_gpus(gpus: list) -> None:
    """Restrict visible GPUs (a no-op once TensorFlow has initialised, e.g. a second run in one process)."""
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices(gpus, "GPU")
