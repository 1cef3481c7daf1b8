"""tf.distribute for ``feredge train``: the strategy, which process writes the run folder, and the numeric policy.

- ``--batch-size`` is the *global* batch: Keras splits every batch between the replicas (B / R each), so a
  run means the same on one device or eight, and ``--lr`` is never rescaled behind the user's back.
- ``mirrored`` uses every GPU of the machine; on a machine without one it uses the CPU's logical devices, of
  which ``FEREDGE_LOGICAL_CPUS=N`` makes N (``tf.config.set_logical_device_configuration``): that is how
  the strategy is tested here, on CPU.
- ``multiworker`` reads the cluster from ``TF_CONFIG``. The chief (``chief``, else ``worker`` 0) writes the run
  folder; every other worker writes the same files, as TensorFlow asks (saving may take part in collective
  ops), into a temporary folder outside ``--out`` that is removed when it exits. The input pipeline is
  auto-sharded by data: each worker builds the same seeded, shuffled pipeline from its own copy of the data
  and keeps its own slice of every global batch, so the workers read disjoint shards of each step.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from feredge.edge.errors import FeredgeError

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")
LOGICAL_CPUS_ENV = "FEREDGE_LOGICAL_CPUS"


class DistributeError(FeredgeError):
    """A strategy cannot be set up as asked (TF_CONFIG, logical devices, resuming a multi-worker run)."""


def make_strategy(name: str) -> Any:
    """The ``tf.distribute`` strategy of ``--strategy``.

    Call it before any other TensorFlow op of the process: the logical CPUs can only be split before the
    runtime starts, and TensorFlow asks for the multi-worker strategy to be created first.
    """
    if name not in STRATEGIES:
        raise DistributeError(f"unknown strategy {name!r}; choose {', '.join(STRATEGIES)}")
    if name == "multiworker":
        cluster = _tf_config()  # before TensorFlow is touched: a bad TF_CONFIG is the user's one-line error
    import tensorflow as tf

    split_cpus()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None if tf.config.list_logical_devices("GPU") else tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices] if devices else None)
        if strategy.num_replicas_in_sync == 1:
            log.warning(
                "--strategy mirrored found one device: training runs as without it (%s=N splits the CPU)",
                LOGICAL_CPUS_ENV,
            )
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        log.info(
            "multi-worker: %s %d of %s, %s",
            resolver.task_type,
            resolver.task_id,
            ", ".join(f"{len(hosts)} {role}" for role, hosts in cluster.items()),
            "the chief: writes the run folder" if is_chief(strategy) else "writes a temporary folder only",
        )
    log.info(
        "strategy %s: %d replicas; --batch-size is the global batch, split between them",
        name,
        strategy.num_replicas_in_sync,
    )
    return strategy


def split_cpus() -> None:
    """Split the host CPU into ``FEREDGE_LOGICAL_CPUS`` logical devices (unset: leave it whole).

    A process that split it already (a second ``feredge tune`` trial) keeps the split; one whose runtime
    started without it cannot split any more, which is an error rather than a silent single device.
    """
    value = os.environ.get(LOGICAL_CPUS_ENV, "").strip()
    if not value:
        return
    if not value.isdigit() or int(value) < 1:
        raise DistributeError(f"{LOGICAL_CPUS_ENV} must be a whole number >= 1, got {value!r}")
    import tensorflow as tf

    count = int(value)
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as exc:  # "Virtual devices cannot be modified after being initialized"
        raise DistributeError(
            f"{LOGICAL_CPUS_ENV}={count}: TensorFlow's devices are already in use in this process "
            f"(split into {len(current) if current else 1}); set it before the process starts"
        ) from exc


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run: always, except a multi-worker task that is not the chief
    (the ``chief`` task, or ``worker`` 0 of a cluster without one), as in TensorFlow's own examples."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def run_folder(out: Path, strategy: Any) -> Path:
    """Where this process writes the run: the chief its ``--out``, any other worker a temporary folder that
    is removed when the process exits (an error included; a killed process leaves it to the system's tmp)."""
    if is_chief(strategy):
        return out
    scratch = Path(tempfile.mkdtemp(prefix="feredge-worker-"))
    atexit.register(shutil.rmtree, scratch, True)
    log.info("not the chief: the run is written to %s by the chief; this worker's copy goes to %s", out, scratch)
    return scratch


def refuse_multiworker_resume(strategy: str, where: Path) -> None:
    """``--resume`` of a multi-worker run is refused: every worker would have to restore the chief's
    checkpoint, which the others never wrote and may not be able to read."""
    if strategy == "multiworker":
        raise DistributeError(
            f"{where}: a --strategy multiworker run cannot be resumed (the other workers have no copy of the "
            "chief's checkpoint); start it again with a new --out"
        )


@contextlib.contextmanager
def lost_workers(strategy: Any) -> Iterator[None]:
    """A multi-worker peer that died, as one line: its heartbeats stop and TensorFlow aborts the others'
    collective ops (``UnavailableError``), which would otherwise end every other worker with a traceback."""
    if getattr(strategy, "cluster_resolver", None) is None:
        yield
        return
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as exc:
        text = str(exc)
        lost = (
            re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text.split("unhealthy", 1)[1])
            if "unhealthy" in text
            else []
        )
        who = ", ".join(f"{job} {task}" for job, task in dict.fromkeys(lost)) or "a worker"
        raise DistributeError(
            f"{who} of the multi-worker cluster stopped; the run cannot go on without it, nor be resumed: "
            "start it again on every worker with a new --out"
        ) from exc


def set_precision(mixed: bool) -> None:
    """``mixed_float16`` with ``--mixed-precision``, else float32, also after an earlier trial of the process set
    it. On a CPU it trains (float16 emulated, slower than float32: Keras says so when the policy is set)."""
    import tf_keras as keras

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")


def _tf_config() -> dict[str, list[str]]:
    """The cluster of ``TF_CONFIG``, checked enough to fail in one line instead of deep inside TensorFlow."""
    text = os.environ.get("TF_CONFIG", "").strip()
    example = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    if not text:
        raise DistributeError(f"--strategy multiworker needs TF_CONFIG on every worker, e.g. TF_CONFIG='{example}'")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        hosts = cluster[task["type"]]
        if not (isinstance(task["index"], int) and 0 <= task["index"] < len(hosts)):
            raise ValueError(f"task index {task['index']!r} is not one of the {len(hosts)} {task['type']} addresses")
    except (ValueError, KeyError, TypeError) as exc:
        raise DistributeError(f"TF_CONFIG is not a cluster and a task ({exc}); expected e.g. {example}") from exc
    return cluster
