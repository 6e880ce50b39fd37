"""Safe defaults of raypipe's Ray connection, checked on real processes and files: the embedded
local Ray listens on loopback only and writes its token file for its owner only; joining a
cluster warns when Ray's token file is readable by other users.

The Ray runs happen in child processes with a home folder of their own, so the session's Ray
and the user's ~/.ray are left alone."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from raypipe.pipeline.runtime import token_file, warn_if_token_readable

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}

#: Starts the embedded Ray as `raypipe` does, gives it work, then lists every listening TCP
#: socket and bound UDP socket of its process tree from /proc.
EMBEDDED = r"""
import json, os, socket, sys, time
from pathlib import Path

import ray

from raypipe.config import RayConfig
from raypipe.pipeline.runtime import ray_session


def address(text):
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if sys.byteorder == "little":  # /proc prints each 32-bit word in host order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw), int(port, 16)


def bound_sockets():
    found = {}
    for kind in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{kind}").read_text().splitlines()[1:]:
            fields = line.split()
            # TCP: LISTEN (0A); UDP: every socket not connected to a peer (07)
            if fields[3] == ("0A" if kind.startswith("tcp") else "07"):
                found[fields[9]] = (kind, *address(fields[1]))
    return found


def process_tree(root):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append((int(stat.parent.name), name))
    tree, todo = {root: "driver"}, [root]
    while todo:
        for pid, name in children.get(todo.pop(), []):
            tree[pid] = name
            todo.append(pid)
    return tree


@ray.remote
class Counter:
    def add(self, n):
        return n + 1


def listening():
    # (process name, kind, address, port) of every bound socket of this process tree
    sockets = bound_sockets()
    seen = set()
    for pid, name in process_tree(os.getpid()).items():
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # the process ended meanwhile
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:  # this descriptor closed meanwhile; the others still count
                continue
            if link.startswith("socket:[") and link[8:-1] in sockets:
                seen.add((name, *sockets[link[8:-1]]))
    return seen


with ray_session(RayConfig(num_cpus=2, object_store_mb=80)):
    assert ray.get(ray.remote(lambda: 1).remote()) == 1
    assert ray.get(Counter.remote().add.remote(1)) == 2
    # The agents open their ports some time after the node is up: list until the same set
    # has been seen three times in a row (0.5 s apart) with the core servers in it.
    history = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        history.append(listening())
        names = {entry[0] for entry in history[-1]}
        if {"gcs_server", "raylet"} <= names and len(history) >= 3:
            if history[-1] == history[-2] == history[-3]:
                break
        time.sleep(0.5)
    # Everything seen at any point counts: a port opened and closed again was still exposed.
    seen = sorted({entry for snapshot in history for entry in snapshot})
    gcs = ray.get_runtime_context().gcs_address
print(json.dumps({"sockets": seen, "gcs": gcs}))
"""

#: Starts a one-node Ray cluster (ray.cluster_utils, its own address) and joins it through
#: `ray_session` with an address, as `--address` does.
JOIN = r"""
import logging, sys

import ray
from ray.cluster_utils import Cluster

from raypipe.config import RayConfig
from raypipe.pipeline.runtime import ray_session

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
cluster = Cluster(
    initialize_head=True,
    head_node_args={"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024},
)
try:
    with ray_session(RayConfig(address=cluster.address)):
        print(ray.get(ray.remote(lambda: "ran on the cluster").remote()))
finally:
    cluster.shutdown()
"""


def _run(script: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"}
    }
    home.mkdir(exist_ok=True)
    clean.update(HOME=str(home), PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean,
        cwd=str(home),
    )


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_embedded_ray_listens_on_loopback_only_with_a_private_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _run(EMBEDDED, home)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    sockets = report["sockets"]
    names = {name for name, *_ in sockets}
    # The core servers are among them (so the listing itself is known to work).
    assert {"gcs_server", "raylet"} <= names, sockets
    exposed = [s for s in sockets if s[2] not in LOOPBACK]
    assert exposed == [], f"Ray sockets not on loopback: {exposed}"
    assert report["gcs"].startswith("127.0.0.1:")
    # The token Ray authenticates with was written for its owner only.
    token = home / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.parent.stat().st_mode & 0o777 == 0o700
    assert len(token.read_text()) == 64


@pytest.mark.integration
def test_joining_with_an_address_warns_about_a_readable_token_file(tmp_path: Path) -> None:
    import secrets

    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o644)
    done = _run(JOIN, tmp_path / "home", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ran on the cluster" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "readable by other users" in line]
    assert len(warnings) == 1, done.stderr[-3000:]
    assert str(token) in warnings[0] and f"chmod 600 {token}" in warnings[0]
    assert "mode 644" in warnings[0]


def test_token_file_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "auth_token"
    token.write_text("0" * 64)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert token_file() == token
    caplog.set_level(logging.WARNING, logger="raypipe.pipeline.runtime")
    for mode, warns in ((0o600, False), (0o400, False), (0o640, True), (0o604, True)):
        token.chmod(mode)
        caplog.clear()
        assert warn_if_token_readable() is warns, oct(mode)
        assert bool(caplog.records) is warns
    token.unlink()
    assert warn_if_token_readable() is False  # no file, nothing to protect
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)  # the token itself, no file
    assert token_file() is None


#: The embedded Ray of ``ray_session`` without an address, on a machine where a `ray start`
#: recorded a cluster (Ray's ``ray_current_cluster`` file under its temp folder).
LOCAL = r"""
import ray

from raypipe.config import RayConfig
from raypipe.pipeline.runtime import ray_session

with ray_session(RayConfig(num_cpus=1, object_store_mb=80)):
    print(ray.get(ray.remote(lambda: "ran locally").remote()))
    print(ray.get_runtime_context().gcs_address)
"""


@pytest.mark.integration
def test_embedded_ray_ignores_a_cluster_recorded_by_ray_start(tmp_path: Path) -> None:
    # Ray's socket paths must stay short: its temp folder goes directly under /tmp.
    temp = Path(tempfile.mkdtemp(prefix="rp-rec-", dir="/tmp"))
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")  # nothing listens
        done = _run(LOCAL, tmp_path / "home", RAY_TMPDIR=str(temp))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ran, gcs = done.stdout.strip().splitlines()[-2:]
    assert ran == "ran locally"
    assert gcs.startswith("127.0.0.1:") and gcs != "127.0.0.1:9"
