"""Connecting to Ray: an embedded local Ray by default, an existing cluster with an address.

Inside a job started by ``ray job submit`` the environment variable ``RAY_ADDRESS`` is set, and
``ray.init()`` joins that cluster; no flag is needed there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from raypipe.config import RayConfig

log = logging.getLogger(__name__)


@contextmanager
def ray_session(config: RayConfig) -> Iterator[None]:
    """Use the running Ray if there is one, else join ``config.address`` or start a local Ray.

    A Ray started here is shut down on exit; one that was already running is left alone.
    """
    if ray.is_initialized():
        yield
        return
    quiet = {"log_to_driver": True, "configure_logging": False}
    if config.address:
        log.info("joining Ray cluster at %s", config.address)
        ray.init(address=config.address, **quiet)
    elif os.environ.get("RAY_ADDRESS"):
        log.info("joining Ray cluster at %s (RAY_ADDRESS)", os.environ["RAY_ADDRESS"])
        ray.init(**quiet)
    else:
        cpus = config.num_cpus or os.cpu_count() or 1
        log.info("starting an embedded local Ray with %d CPU(s)", cpus)
        ray.init(
            num_cpus=cpus,
            object_store_memory=config.object_store_mb * 1024 * 1024,
            include_dashboard=False,
            **quiet,
        )
    try:
        yield
    finally:
        ray.shutdown()


def cluster_reach() -> dict[str, float] | None:
    """The most resources the connected cluster can grow to, where Ray reports it: the
    largest cluster its autoscaler may start (node groups' max count x their resources) from
    the cluster config in the GCS, read the way Ray Data and Ray Train read it. Never less
    than what the cluster has now. None where nothing published that config: a local Ray, and
    clusters scaled by Ray 2.60's own autoscalers (``ray up``, KubeRay's in-tree one)."""
    try:
        from ray._private.state import state

        most = state.get_max_resources_from_cluster_config()
    except Exception as error:  # a private Ray API: treat any change as "not reported"
        log.debug("the cluster's largest size is not known: %s", error)
        return None
    if not most:
        return None
    now = ray.cluster_resources()
    return {key: max(float(most.get(key, 0)), float(now.get(key, 0))) for key in {*most, *now}}
