"""How many extraction actors `raypipe extract` runs: a fixed pool, or one that grows and
shrinks with the work and the cluster.

Plain Python (no Ray), so the sizing is checked without a cluster and ``extract --dry-run``
shows it without starting Ray. The pool is Ray Data's ``ActorPoolStrategy(min_size,
max_size)``: Ray Data starts ``min`` actors, adds actors while they are busy and the cluster
has room for them (asking the cluster's autoscaler for nodes when it is short), and retires
them when they idle, never going past ``max``.

``max`` is, in order: ``workers`` (a fixed pool), ``max_workers``, the actors that fit the
largest cluster the autoscaler may start (where Ray reports it: the cluster config in the GCS,
which Ray Data and Ray Train read too; an autoscaler or platform has to publish it, and Ray
2.60's autoscalers, v1 and v2, do not), else one actor per media to compute: bounding the
pool by what is up at the start would keep a cluster that starts from zero workers at one
actor for the whole job. Every bound is capped by the media to compute (an actor more would
get no work).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Where a pool's largest size comes from (:attr:`PoolSize.bound`), as :meth:`PoolSize.
#: describe` words it.
BOUNDS = {
    "workers": "workers: a fixed pool",
    "max_workers": "max_workers",
    "cluster": "what fits the largest cluster the autoscaler may start",
    "media": "one per media to compute",
}


@dataclass(frozen=True)
class PoolSize:
    """Bounds of the extraction actor pool."""

    min: int
    max: int
    #: What set ``max`` (a key of :data:`BOUNDS`).
    bound: str

    @property
    def fixed(self) -> bool:
        """The pool neither grows nor shrinks."""
        return self.min == self.max

    def describe(self) -> str:
        """``'4 actor(s) (workers: a fixed pool)'``, ``'1 to 8 actor(s), at most
        max_workers'``..."""
        if self.bound == "workers":
            return f"{self.max} actor(s) ({BOUNDS['workers']})"
        size = f"{self.min}" if self.fixed else f"{self.min} to {self.max}"
        return f"{size} actor(s), at most {BOUNDS[self.bound]}"


def actors_fitting(
    resources: Mapping[str, float],
    cpus_per_worker: float,
    gpus_per_worker: float,
    decode_tasks: int = 0,
) -> int:
    """Actors that ``resources`` hold at once: by CPUs left after ``decode_tasks`` one-CPU
    decode tasks, and by GPUs when the actors use GPUs (possibly 0)."""
    fit = int(max(0.0, float(resources.get("CPU", 0.0)) - decode_tasks) // cpus_per_worker)
    if gpus_per_worker > 0:
        fit = min(fit, int(float(resources.get("GPU", 0.0)) // gpus_per_worker))
    return fit


def pool_size(
    *,
    workers: int | None,
    min_workers: int,
    max_workers: int | None,
    media: int,
    cpus_per_worker: float,
    gpus_per_worker: float = 0.0,
    decode_tasks: int = 0,
    reach: Mapping[str, float] | None = None,
) -> PoolSize:
    """The pool of a job computing ``media`` media.

    Args:
        workers: A fixed size (ExtractConfig.workers), or None for an autoscaling pool.
        min_workers: Fewest actors of an autoscaling pool.
        max_workers: Most actors of an autoscaling pool; None: what the cluster can reach.
        media: Media to compute (every bound is capped by it; at least 1).
        cpus_per_worker: CPUs one actor reserves.
        gpus_per_worker: GPUs one actor reserves (0 for CPU actors).
        decode_tasks: One-CPU decode tasks running beside the actors.
        reach: The most resources the cluster can grow to ({"CPU": ..., "GPU": ...}), or None
            where Ray does not report it.
    """
    media = max(1, media)
    if workers is not None:
        size = min(workers, media)
        return PoolSize(size, size, "workers")
    if max_workers is not None:
        most, bound = max_workers, "max_workers"
    elif reach is not None:
        most = max(1, actors_fitting(reach, cpus_per_worker, gpus_per_worker, decode_tasks))
        bound = "cluster"
    else:
        most, bound = media, "media"
    most = min(most, media)
    return PoolSize(min(min_workers, most), most, bound)


def oversubscription(
    pool: PoolSize,
    cpus_per_worker: float,
    gpus_per_worker: float,
    decode_tasks: int,
    cluster: Mapping[str, float],
    known_reach: bool,
) -> str | None:
    """A warning when the pool's smallest size (all of a fixed pool) and the decode tasks need
    more than ``cluster`` offers (the most it can reach when ``known_reach``, else what it has
    now); None when they fit."""
    if actors_fitting(cluster, cpus_per_worker, gpus_per_worker, decode_tasks) >= pool.min:
        return None
    what = "workers" if pool.bound == "workers" else "min_workers"
    have = f"{float(cluster.get('CPU', 0.0)):g} CPU(s)"
    if gpus_per_worker > 0:
        have += f" and {float(cluster.get('GPU', 0.0)):g} GPU(s)"
    where = (
        "the most the cluster can reach"
        if known_reach
        else "what the cluster has now (an autoscaling cluster may add nodes)"
    )
    gpus = f" + {gpus_per_worker:g} GPU" if gpus_per_worker > 0 else ""
    return (
        f"{pool.min} actor(s) x ({cpus_per_worker:g} CPU{gpus}) + {decode_tasks} decode task(s) "
        f"need more than {have}, {where}; lower {what} or decode_tasks if the job stalls"
    )
