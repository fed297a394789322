"""Device and tf.distribute strategy selection, done before TensorFlow initialises its devices."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from kerasrun._tf import tf
from kerasrun.config.schema import Config
from kerasrun.errors import ConfigError
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
    if wanted == ["cpu"] or (wanted == ["auto"] and not gpus):
        chosen_gpus: list[Any] = []
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
    if runtime.strategy == "multi_worker":
        # Collective ops must be configured before anything initialises TensorFlow's runtime.
        placement = make_multi_worker(config, kind)
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


def make_multi_worker(config: Config, kind: str) -> Placement:
    """MultiWorkerMirroredStrategy from TF_CONFIG; the chief is task `chief`, or worker 0 when there is none."""
    cluster = read_tf_config(config)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    # Its coordination service installs TensorFlow's own SIGTERM notifier (tsl::SigtermNotifier), which
    # would swallow the preemption signal: kerasrun's handler marks the run and checkpoints instead.
    reclaim_signals()
    task = cluster["task"]
    is_chief = task["type"] == "chief" or (task["type"] == "worker" and int(task["index"]) == 0 and "chief" not in cluster["cluster"])
    return Placement(f"/{kind}:0", strategy, logical_names(kind), is_chief=is_chief)


def read_tf_config(config: Config) -> dict[str, Any]:
    """Parse and check TF_CONFIG for multi-worker training."""
    loc = ("runtime", "strategy")
    raw = os.environ.get("TF_CONFIG")
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not raw:
        raise ConfigError(
            config.problem(
                loc,
                "multi_worker needs the TF_CONFIG environment variable on every worker",
                f"e.g. TF_CONFIG='{example}', or try it locally with `kerasrun launch --workers 2 CONFIG`",
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
