"""Nothing is downloaded at run time: the demo's extraction (every extractor it runs, on an
embedded Ray) runs in a process whose every Python process, Ray's workers included, can reach
loopback only (and the cloud metadata address, which Ray itself probes), with the model hubs
switched to offline and every cache folder empty.

The network is closed by a ``sitecustomize`` module first on ``PYTHONPATH`` (which Ray's
workers inherit): a connection to any address but loopback fails, and is written to a file
the test reads, so an attempt is seen even where the caller would swallow the error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

#: Loaded by every Python process started with this folder first on PYTHONPATH.
GUARD = r"""
import ipaddress
import os
import socket

_LOG = os.environ["RAYPIPE_TEST_NETWORK_LOG"]
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _outward(sock, address):
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False  # Unix sockets: Ray's own plumbing
    host = address[0]
    try:
        return not ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host != "localhost"


def _refuse(sock, address):
    with open(_LOG, "a") as log:
        log.write(f"{os.getpid()} {address!r}\n")
    raise OSError(101, f"network is closed in this test (tried {address!r})")


def connect(self, address):
    if _outward(self, address):
        _refuse(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    if _outward(self, address):
        _refuse(self, address)
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
"""


def test_the_demo_extraction_downloads_nothing(demo_set: Path, tmp_path: Path) -> None:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    empty = tmp_path / "empty-home"
    empty.mkdir()
    attempts = tmp_path / "network.log"
    manifest = pd.read_csv(demo_set)
    readable = manifest[~manifest["media_id"].str.startswith("broken")].head(3)
    subset = demo_set.parent / "offline_subset.csv"
    readable.to_csv(subset, index=False)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "HF_", "TRANSFORMERS_", "TORCH_", "XDG_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(guard), str(ROOT)]),
        RAYPIPE_TEST_NETWORK_LOG=str(attempts),
        HOME=str(empty),
        XDG_CACHE_HOME=str(empty / ".cache"),
        HF_HOME=str(empty / "hf"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TORCH_HOME=str(empty / "torch"),
    )
    # The guard itself: an outward connection fails and is written down; loopback is open.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import socket\n"
            "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
            "except OSError as e:\n    print('refused', e.errno)\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "socket.create_connection(s.getsockname(), timeout=2); print('loopback open')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert probe.stdout.split() == ["refused", "101", "loopback", "open"], probe.stderr
    assert "192.0.2.1" in attempts.read_text()
    attempts.unlink()

    store = tmp_path / "store"
    command = [
        sys.executable,
        "-c",
        "import socket, sys; assert socket.socket.connect.__name__ == 'connect' and "
        "socket.socket.connect.__module__ == 'sitecustomize', 'guard not loaded'; "
        "from raypipe.cli import main; sys.argv[0] = 'raypipe'; main()",
        "extract",
        "--manifest",
        str(subset),
        "--out",
        str(store),
        # the demo's extraction (raypipe.pipeline.demo.demo_extract_config)
        "--set",
        "opensmile_lld.enabled=false",
        "--set",
        "whisper_embedding.enabled=false",
        "--set",
        "ray.num_cpus=1",
        # on Ray as the demo's 70 media are (3 media would otherwise stay in this process)
        "--set",
        "local_max_media=0",
        "--json",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Ray 2.60's dashboard process asks the cloud metadata address which cloud it runs on
    # (its usage library does, whatever the usage-statistics setting; docs/cluster.md). That
    # is the one connection allowed: it downloads nothing; anything else fails the test.
    tried = attempts.read_text().splitlines() if attempts.exists() else []
    other = [line for line in tried if "('169.254.169.254', 80)" not in line]
    assert other == [], "connections to the network were attempted:\n" + "\n".join(other)
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["media"] == 3 and set(summary["computed"]) == {"ok"}  # every one ok

    from raypipe.store.feature_store import FeatureStore

    status = FeatureStore(str(store)).status(problems_only=False)
    assert set(status["media_id"]) == set(readable["media_id"])
    assert (status["status"] == "ok").all(), status
    assert len(FeatureStore(str(store)).extractors()) >= 5
