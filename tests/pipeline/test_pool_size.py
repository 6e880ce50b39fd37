"""Sizing of the extraction actor pool (plain Python: no Ray is started)."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from raypipe.config import ExtractConfig
from raypipe.pipeline.pool import PoolSize, actors_fitting, oversubscription, pool_size

CPU = {"cpus_per_worker": 1.0}


def _pool(**kwargs) -> PoolSize:
    settings = {"workers": None, "min_workers": 1, "max_workers": None, "media": 100, **CPU}
    return pool_size(**{**settings, **kwargs})


def test_unset_workers_give_a_pool_of_one_to_the_media_when_the_reach_is_unknown() -> None:
    # A cluster started by `ray up`: Ray does not say how far it grows, so the pool may grow
    # to one actor per media (Ray Data adds actors only while the cluster has room).
    assert _pool() == PoolSize(1, 100, "media")
    assert _pool(media=7) == PoolSize(1, 7, "media")


def test_a_reported_reach_bounds_the_pool_by_the_actors_it_holds() -> None:
    # 3 nodes x 4 CPUs the autoscaler may start (the 0-CPU head adds none).
    reach = {"CPU": 12.0, "memory": 1e11}
    assert _pool(reach=reach) == PoolSize(1, 12, "cluster")
    assert _pool(reach=reach, cpus_per_worker=2.0) == PoolSize(1, 6, "cluster")
    # Two CPUs go to decode tasks first.
    assert _pool(reach=reach, cpus_per_worker=2.0, decode_tasks=2) == PoolSize(1, 5, "cluster")
    # Never more actors than media, never fewer than one.
    assert _pool(reach=reach, media=4) == PoolSize(1, 4, "cluster")
    assert _pool(reach={"CPU": 0.0}) == PoolSize(1, 1, "cluster")
    # An unbounded node type (max_workers -1) is reported as sys.maxsize.
    assert _pool(reach={"CPU": float(sys.maxsize)}, media=9) == PoolSize(1, 9, "cluster")


def test_gpu_actors_are_bounded_by_gpus_and_by_cpus() -> None:
    gpu = {"gpus_per_worker": 0.25}
    assert _pool(reach={"CPU": 64.0, "GPU": 4.0}, **gpu) == PoolSize(1, 16, "cluster")
    assert _pool(reach={"CPU": 8.0, "GPU": 4.0}, **gpu) == PoolSize(1, 8, "cluster")
    assert actors_fitting({"CPU": 8.0}, 1.0, 0.5) == 0  # no GPU anywhere


def test_explicit_bounds_and_a_fixed_size() -> None:
    reach = {"CPU": 12.0}
    assert _pool(max_workers=3, reach=reach) == PoolSize(1, 3, "max_workers")
    assert _pool(max_workers=50, media=20) == PoolSize(1, 20, "max_workers")
    assert _pool(min_workers=2, max_workers=6) == PoolSize(2, 6, "max_workers")
    # A minimum above the media left is lowered to them.
    assert _pool(min_workers=4, media=2) == PoolSize(2, 2, "media")
    # workers fixes the pool (capped by the media), whatever the cluster reaches.
    fixed = _pool(workers=4, reach=reach)
    assert fixed == PoolSize(4, 4, "workers") and fixed.fixed
    assert _pool(workers=4, media=3) == PoolSize(3, 3, "workers")
    assert "1 to 12 actor(s)" in _pool(reach=reach).describe()
    assert fixed.describe().startswith("4 actor(s)")


def test_oversubscription_warns_about_the_part_of_the_pool_that_must_run() -> None:
    fixed = PoolSize(4, 4, "workers")
    message = oversubscription(fixed, 1.0, 0.0, 1, {"CPU": 2.0}, known_reach=False)
    assert message and "4 actor(s)" in message and "lower workers or decode_tasks" in message
    assert "may add nodes" in message
    # The smallest autoscaling pool fits what the cluster can reach: no warning.
    growing = PoolSize(1, 100, "cluster")
    assert oversubscription(growing, 1.0, 0.0, 0, {"CPU": 12.0}, known_reach=True) is None
    # A cluster with no CPUs yet, its reach unknown: the first actor waits for a node.
    empty = oversubscription(PoolSize(1, 9, "media"), 1.0, 0.0, 0, {"CPU": 0.0}, False)
    assert empty and "min_workers" in empty
    gpus = oversubscription(PoolSize(2, 2, "workers"), 1.0, 1.0, 0, {"CPU": 8, "GPU": 1}, True)
    assert gpus and "1 GPU(s)" in gpus and "the most the cluster can reach" in gpus


def test_config_keeps_workers_and_adds_min_and_max() -> None:
    assert ExtractConfig(workers=3).workers == 3  # existing configs still load
    config = ExtractConfig(min_workers=2, max_workers=8)
    assert (config.workers, config.min_workers, config.max_workers) == (None, 2, 8)
    with pytest.raises(ValidationError, match="either workers or min_workers/max_workers"):
        ExtractConfig(workers=3, max_workers=8)
    with pytest.raises(ValidationError, match=r"min_workers \(4\) is above max_workers \(2\)"):
        ExtractConfig(min_workers=4, max_workers=2)


def test_cluster_reach_reads_the_autoscalers_largest_cluster(monkeypatch) -> None:
    import ray
    from ray._private import state

    from raypipe.pipeline.runtime import cluster_reach

    running = ray.is_initialized()  # another test of the session may have started Ray
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 5.0})
    monkeypatch.setattr(
        state.state, "get_max_resources_from_cluster_config", lambda: {"CPU": 16, "GPU": 0}
    )
    assert cluster_reach() == {"CPU": 16.0, "GPU": 0.0, "memory": 5.0}
    monkeypatch.setattr(state.state, "get_max_resources_from_cluster_config", lambda: None)
    assert cluster_reach() is None

    def broken() -> None:
        raise RuntimeError("not connected")

    monkeypatch.setattr(state.state, "get_max_resources_from_cluster_config", broken)
    assert cluster_reach() is None
    assert ray.is_initialized() == running
