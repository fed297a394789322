"""Under an address-space limit (`ulimit -v`): glibc's arenas are capped, a run that won't fit is warned about, and its folder never looks alive."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable

import pytest
from helpers import TESTS, config_path

from kerasrun import startup
from kerasrun.errors import graph_error
from kerasrun.train import memory
from kerasrun.train.memory import address_space_warning, out_of_memory_hint
from kerasrun.train.run import failure_text

GB = 10**9
# TensorFlow 2.21's message when oneDNN could not map memory under a limit (seen with `ulimit -v 3000000`, mirrored).
ONEDNN_ABORT = """Graph execution error:

Detected at node StatefulPartitionedCall/replica_1/digits_mlp_1/hidden_1/Relu defined at (most recent call last):
<stack traces unavailable>
2 root error(s) found.
  (0) ABORTED:  Operation received an exception:Status: 5, message: could not execute a primitive, in file tensorflow/core/kernels/mkl/mkl_matmul_op_fused.cc:306
\t [[{{node StatefulPartitionedCall/replica_1/digits_mlp_1/hidden_1/Relu}}]]
0 successful operations.
0 derived errors ignored. [Op:__inference_multi_step_on_iterator_1624]"""


def limited_to(size: int) -> Callable[[], None]:
    """A preexec_fn that sets the child's address-space limit, as `ulimit -v` does."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (size, size))


def python(code: str, limit: int | None, env: dict[str, str] | None = None) -> str:
    """Run Python code in a fresh interpreter (optionally under a limit); its stdout."""
    full_env = {**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        preexec_fn=limited_to(limit) if limit else None,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


CAP = "from kerasrun import startup; print(startup.cap_malloc_arenas(), startup.address_space_limit())"


def test_the_arenas_are_capped_only_under_a_limit_the_user_did_not_tune() -> None:
    assert python(CAP, None) == "False None"
    assert python(CAP, 100 * GB) == f"True {100 * GB}"
    assert python(CAP, 100 * GB, {"MALLOC_ARENA_MAX": "8"}).startswith("False")  # glibc reads the user's own setting


def test_no_warning_without_a_limit_or_with_room(monkeypatch) -> None:
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY  # the test process runs unlimited
    assert address_space_warning(2) is None
    monkeypatch.setattr(memory, "reserved_bytes", lambda field="VmSize": 2 * 2**30)
    monkeypatch.setattr(startup, "address_space_limit", lambda: 4 * 2**30)
    assert address_space_warning(1) is None and address_space_warning(2) is None  # 2 GiB + 0.8 GiB fits in 4 GiB


def test_a_tight_limit_is_one_warning_line_with_the_need(monkeypatch) -> None:
    monkeypatch.setattr(memory, "reserved_bytes", lambda field="VmSize": 2 * 2**30)
    monkeypatch.setattr(startup, "address_space_limit", lambda: int(2.5 * 2**30))
    assert address_space_warning(1) is None  # 2 GiB + 0.2 GiB fits
    said = address_space_warning(2)
    assert said is not None and "\n" not in said
    assert said.startswith("the address space is limited to 2.5 GiB (ulimit -v) and this run will likely need about 2.8 GiB")
    assert "`kerasrun runs` shows the run as crashed" in said


def test_a_tensorflow_error_blames_the_limit_only_when_the_process_came_near_it(monkeypatch) -> None:
    from kerasrun._tf import tf

    aborted = tf.errors.AbortedError(None, None, ONEDNN_ABORT)
    assert out_of_memory_hint(aborted) is None  # no limit
    monkeypatch.setattr(startup, "address_space_limit", lambda: 3 * 2**30)
    monkeypatch.setattr(memory, "reserved_bytes", lambda field="VmSize": 2 * 2**30)
    assert out_of_memory_hint(aborted) is None  # far from it: something else failed
    monkeypatch.setattr(memory, "reserved_bytes", lambda field="VmSize": int(2.9 * 2**30))
    assert (
        out_of_memory_hint(aborted)
        == "the address space reached 2.9 GiB of its 3.0 GiB limit (ulimit -v), the likely cause (docs/devices.md#memory-limits)"
    )


def test_memory_errors_say_out_of_memory() -> None:
    assert out_of_memory_hint(MemoryError()) == "out of memory"
    assert out_of_memory_hint(ValueError("x")) is None
    assert failure_text(MemoryError(), None) == "MemoryError (out of memory)"  # type: ignore[arg-type]


def test_a_graph_error_with_no_stack_says_what_failed() -> None:
    graph = graph_error(Exception(ONEDNN_ABORT))
    assert graph is not None and graph.op == "StatefulPartitionedCall/replica_1/digits_mlp_1/hidden_1/Relu"
    assert graph.message.startswith("ABORTED: Operation received an exception:Status: 5, message: could not execute a primitive")


def kerasrun_limited(args: list[str], limit: int) -> subprocess.CompletedProcess:
    """`python -m kerasrun ARGS` under an address-space limit."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "kerasrun", *args], capture_output=True, text=True, env=env, timeout=300, preexec_fn=limited_to(limit)
    )


def listed(runs_dir: str) -> list[dict]:
    """`kerasrun runs --json` on a folder."""
    out = subprocess.run(
        [sys.executable, "-m", "kerasrun", "runs", "--runs-dir", runs_dir, "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_a_mirrored_run_that_cannot_fit_is_warned_and_shown_dead(tmp_path) -> None:
    # 2.2 GB holds TensorFlow and the prepared experiment (1.7 GiB here), not the ~40 threads `mirrored` starts: TensorFlow
    # aborts in a thread pool ("LLVM ERROR: pthread_create failed") or an op fails; either way the folder must not stay `running`.
    args = ["train", str(config_path("digits_mlp")), "--set", "train.epochs=1", "--set", "runtime.strategy=mirrored"]
    out = kerasrun_limited([*args, "--runs-dir", str(tmp_path), "--progress", "plain"], 2_200_000_000)
    assert out.returncode != 0
    assert "warning: the address space is limited to 2.0 GiB (ulimit -v)" in out.stderr
    assert [run["status"] for run in listed(str(tmp_path))] in (["crashed"], ["failed"])


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) > 8, reason="measured on 2 cores: more cores start more threads, each reserving a stack")
def test_a_mirrored_run_fits_in_3_gb_with_capped_arenas(tmp_path) -> None:
    # Before the cap this run aborted (SIGABRT) or failed in oneDNN under 3 GB: its 16 arenas reserved 1 GiB.
    args = ["train", str(config_path("digits_mlp")), "--set", "train.epochs=1", "--set", "runtime.strategy=mirrored"]
    out = kerasrun_limited([*args, "--runs-dir", str(tmp_path), "--progress", "plain"], 3 * GB)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "warning" not in out.stderr
    assert [run["status"] for run in listed(str(tmp_path))] == ["completed"]
