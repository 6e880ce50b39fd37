"""Connecting to Ray: an embedded local Ray by default, an existing cluster with an address.

Inside a job started by ``ray job submit`` the environment variable ``RAY_ADDRESS`` is set, and
``ray.init()`` joins that cluster; no flag is needed there.

The embedded local Ray listens on 127.0.0.1 only (its dashboard is off), and its token file is
created readable by its owner only; joining a cluster warns when Ray's token file can be read
by other users.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray

from raypipe.config import RayConfig

log = logging.getLogger(__name__)

#: The address the embedded local Ray binds its servers to.
LOOPBACK = "127.0.0.1"


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
        warn_if_token_readable()
        ray.init(address=config.address, **quiet)
    elif os.environ.get("RAY_ADDRESS"):
        log.info("joining Ray cluster at %s (RAY_ADDRESS)", os.environ["RAY_ADDRESS"])
        warn_if_token_readable()
        ray.init(**quiet)
    else:
        cpus = config.num_cpus or os.cpu_count() or 1
        log.info("starting an embedded local Ray with %d CPU(s) on %s", cpus, LOOPBACK)
        create_private_token()
        # The embedded Ray stays on this machine: Ray's usage statistics (which also probe
        # the cloud metadata address 169.254.169.254) are off unless the user turned them on.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        with _loopback_node():
            # "local" always starts a new Ray: without it ray.init joins the cluster a
            # `ray start` on this machine recorded in /tmp/ray/ray_current_cluster.
            ray.init(
                address="local",
                num_cpus=cpus,
                object_store_memory=config.object_store_mb * 1024 * 1024,
                include_dashboard=False,
                _node_ip_address=LOOPBACK,
                **quiet,
            )
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _loopback_node() -> Iterator[None]:
    """While an embedded Ray starts, keep 127.0.0.1 as its node address.

    Ray 2.60's servers (GCS, raylet, workers, agents) listen on 127.0.0.1 only when the node
    address is 127.0.0.1, and on every interface otherwise; but ``ray.init`` replaces a
    loopback node address by the machine's outward one unless ``ENABLE_RAY_CLUSTER`` is off, as
    Ray sets it on macOS and Windows. That switch is read from the environment when Ray is
    imported, so it is turned off here for the start only: a driver that joins a cluster later
    needs it on. ``tests/pipeline/test_runtime_safety.py`` checks every socket Ray opens.
    """
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def token_file() -> Path | None:
    """The file Ray reads its authentication token from: ``RAY_AUTH_TOKEN_PATH``, else
    ``~/.ray/auth_token``; None when ``RAY_AUTH_TOKEN`` holds the token itself."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    custom = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(custom).expanduser() if custom else Path.home() / ".ray" / "auth_token"


def warn_if_token_readable() -> bool:
    """Log a warning when Ray's token file can be read by the file's group or by others (anyone
    who reads it can run code on the cluster); returns whether it warned."""
    path = token_file()
    try:
        mode = path.stat().st_mode & 0o777 if path is not None else 0
    except OSError:  # no token file: nothing to protect
        return False
    if not mode & 0o044:
        return False
    log.warning(
        "Ray's token file %s is readable by other users (mode %03o): whoever reads it can run "
        "code on the cluster; run `chmod 600 %s`.",
        path,
        mode,
        path,
    )
    return True


def create_private_token() -> None:
    """Before an embedded Ray starts: Ray 2.60 turns token authentication on for a new local
    Ray and, when ``~/.ray/auth_token`` is missing, writes a new token there with the process's
    umask (usually mode 0644). Writing it first, with mode 0600 (folder 0700), keeps it
    private; Ray then reads it. Nothing is done when the token comes from the environment, the
    file exists or ``RAY_AUTH_MODE`` turns authentication off."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = Path.home() / ".ray" / "auth_token"
    if path.exists():
        return
    # Written whole under a name of this process's own, then linked into place: two drivers
    # starting at once never read a half-written token, and the first one's token wins.
    draft = path.with_name(f".auth_token.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w") as file:
            file.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
        os.link(draft, path)
    except FileExistsError:
        pass
    except OSError as error:  # a home Ray cannot write to either: Ray reports it
        log.debug("could not write %s first: %s", path, error)
    finally:
        draft.unlink(missing_ok=True)


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
