"""`raypipe extract` on a Ray cluster that starts with no worker nodes and grows on demand.

Run as a script by tests/pipeline/test_extract_autoscaling.py, in a process session of its own:

    python tests/pipeline/autoscaling_extract.py MANIFEST STORE RESULT_JSON TEMP_DIR

It starts Ray's fake multi-node autoscaling cluster (the ``fake_multinode`` node provider that
``ray.cluster_utils.AutoscalingCluster`` drives): a head with 0 CPUs and one node type of 1 CPU
and a 100 MB object store, 0 to 2 of them, started by the autoscaler when work waits. Then it
runs ``run_extract`` (openSMILE only, one media per batch) against it with ``ray.address`` and
writes the summary and the cluster's nodes to RESULT_JSON. Ray keeps its sessions in
TEMP_DIR (a short path: Ray's socket paths must stay under about 100 characters).

``AutoscalingCluster`` itself is not used: its ``start()`` and ``shutdown()`` run ``ray stop
--force``, which kills every Ray on the machine (other test sessions' too), it always takes
GCS port 6379, and its base config (fake_multi_node/example.yaml) is not shipped in Ray's
wheel. This starts the same provider with a free port and its own temp folder; whoever starts
this script ends the cluster by ending the script's process session
(:func:`tests.process_session.end_session`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Worker nodes: 1 CPU, a small object store; none at the start, at most this many.
MAX_NODES = 2
OBJECT_STORE = 100 * 1024 * 1024
#: The fake provider names its nodes by these ids (the head's is Ray's own random id).
FAKE_ID_PREFIX = "fffffffffffffffffffffffffffffffffffffffffffffffffff"


#: One media per batch, and openSMILE functionals over 0.5 s windows every 20 ms as well (one
#: actor takes 2 to 3 s per 2 s clip here, decoding and writing included), so that one actor
#: would take well over a minute: longer than the 20 to 30 s the cluster takes to add a node
#: and the pool an actor on it.
WORK = ["batch_size=1", "opensmile.window_s=0.5", "opensmile.hop_s=0.02"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_config(gcs_address: str) -> dict:
    """An autoscaling config for the fake multi-node provider: a 0-CPU head and 0..2 worker
    nodes of 1 CPU, idle ones removed after 30 s."""
    return {
        "cluster_name": "raypipe-autoscaling-test",
        "max_workers": MAX_NODES,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu1": {
                "resources": {"CPU": 1, "object_store_memory": OBJECT_STORE},
                "node_config": {},
                "min_workers": 0,
                "max_workers": MAX_NODES,
            },
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.5,
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


#: Attempts at starting the head. `ray start` gives a raylet 30 s (fixed in Ray) to register
#: with the GCS; on a 2-core machine shared with another test worker that is sometimes not
#: enough, and the free ports picked here can be taken before Ray binds them.
START_ATTEMPTS = 3


def start_cluster(temp_dir: Path) -> str:
    """Start the head (its autoscaler starts the worker nodes); return the GCS address. A
    failed start's processes are ended and the start tried again in a fresh folder."""
    for attempt in range(1, START_ATTEMPTS + 1):
        folder = temp_dir / f"a{attempt}"
        folder.mkdir()
        try:
            return _start_head(folder)
        except subprocess.CalledProcessError as error:
            if attempt == START_ATTEMPTS:
                raise
            print(f"ray start failed (attempt {attempt}): {error}; trying again", flush=True)
            _kill_matching(str(folder))
    raise AssertionError("unreachable")


def _kill_matching(text: str) -> None:
    """SIGKILL every process whose command line contains ``text`` (a failed start's GCS,
    raylet and their helpers name its folder in their arguments)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                os.kill(int(entry.name), signal.SIGKILL)


def _start_head(temp_dir: Path) -> str:
    """One `ray start --head` with fresh ports, its sessions in ``temp_dir``."""
    import ray

    host = ray._private.services.get_node_ip_address()
    address = f"{host}:{_free_port()}"
    config = temp_dir / "autoscaling.json"
    config.write_text(json.dumps(cluster_config(address)))
    env = {
        **os.environ,
        # What AutoscalingCluster sets: the fake provider, and an autoscaler that looks every
        # second rather than every five.
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
    }
    subprocess.run(
        [
            "ray",
            "start",
            "--head",
            f"--port={address.rsplit(':', 1)[1]}",
            f"--autoscaling-config={config}",
            "--num-cpus=0",
            f"--object-store-memory={OBJECT_STORE}",
            f"--temp-dir={temp_dir}",
            f"--dashboard-port={_free_port()}",
            f"--ray-client-server-port={_free_port()}",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return address


def main(manifest: str, store: str, result: str, temp_dir: str) -> None:
    # A throwaway local cluster: no token (this process and the nodes share the environment).
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Ray Data asks the autoscaler for more nodes at most every 10 s, once the CPUs it holds
    # were half busy over the last 10 s; a short job on a test cluster needs it sooner (as
    # AUTOSCALER_UPDATE_INTERVAL_S does for the autoscaler itself).
    os.environ["RAY_DATA_MIN_GAP_BETWEEN_AUTOSCALING_REQUESTS"] = "2"
    os.environ["RAY_DATA_DEFAULT_CLUSTER_SCALING_UP_CPU_UTIL_THRESHOLD"] = "0.1"
    import ray

    from raypipe.config import ExtractConfig
    from raypipe.config.base import load_config
    from raypipe.extractors.registry import EXTRACTORS
    from raypipe.pipeline.extract import run_extract

    started = time.time()
    address = start_cluster(Path(temp_dir))
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    assert ray.cluster_resources().get("CPU", 0) == 0, "the cluster should start without CPUs"
    others = [
        f"{name}.enabled=false"
        for name in EXTRACTORS
        if name != "opensmile" and name in ExtractConfig.model_fields
    ]
    config = load_config(
        ExtractConfig,
        None,
        [*others, *WORK, f"ray.address={address}"],
        {"manifest": manifest, "out": store},
    )
    extract_started = time.time()
    summary = run_extract(config)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    Path(result).write_text(
        json.dumps(
            {
                "computed": dict(summary.computed),
                "nodes": dict(summary.nodes),
                "media": summary.media,
                "cluster_nodes": nodes,
                "head": ray.get_runtime_context().get_node_id(),
                "start_s": round(extract_started - started, 1),
                "extract_s": round(time.time() - extract_started, 1),
            }
        )
    )
    ray.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:5])
