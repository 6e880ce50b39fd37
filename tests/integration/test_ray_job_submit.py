"""A real Ray head (`ray start --head` on loopback, token authentication on), a real
`ray job submit` of jobs/extract.py, and a check of the store it wrote."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.process_session import end_session

AUDIO_TEXT_OFF = (
    "opensmile_lld",
    "vad",
    "whisper_transcript",
    "whisper_embedding",
    "text_embedding",
)
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """Start a head node as a user would, with a token; yield (dashboard URL, client env)."""
    token_file = tmp_path_factory.mktemp("token") / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = _free_port(), _free_port()
    temp_dir = Path("/tmp") / f"rp-head-{secrets.token_hex(3)}"  # short: socket path limits
    head = subprocess.Popen(
        [
            "ray",
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--num-cpus=2",
            # Another Ray on this machine (the suite's shared local one) already holds the
            # default agent ports (52365...): a second node needs its own or it gets no job agent.
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
            "--include-dashboard=true",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(
                ["ray", "job", "list", "--address", url], env=env, capture_output=True, text=True
            )
            if probe.returncode == 0:
                break
            if head.poll() is not None or time.monotonic() > deadline:
                output = head.stdout.read() if head.poll() is not None else ""
                pytest.fail(f"Ray head did not come up: {probe.stderr[-2000:]}\n{output[-2000:]}")
            time.sleep(2)
        yield url, env
    finally:
        # `ray start --block` does not end on SIGTERM within 30 s: every process of its
        # session (the head's daemons included) gets SIGTERM, then SIGKILL after 5 s.
        end_session(head.pid, grace_s=5.0)
        head.wait(timeout=30)


def test_unauthenticated_submission_is_refused(ray_head: tuple[str, dict[str, str]]) -> None:
    url, env = ray_head
    bare = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    bare["RAY_AUTH_TOKEN_PATH"] = "/nonexistent/token"
    result = subprocess.run(
        ["ray", "job", "list", "--address", url], env=bare, capture_output=True, text=True
    )
    # Refused for the reason docs/cluster.md gives, not for any other failure.
    said = result.stdout + result.stderr
    assert result.returncode != 0 and "Authentication required" in said, said[-2000:]


#: What the job server answers while the head's job agent is still starting.
NO_AGENT = "No available agent to submit job"


def _submit(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ray job submit``, tried again while the head's job agent is still starting: the job
    server answers before its agent can take jobs, as a user right after `ray start` sees."""
    deadline = time.monotonic() + 120
    while True:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if NO_AGENT not in result.stdout + result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(3)


def test_extract_job_submitted_to_a_ray_head(
    ray_head: tuple[str, dict[str, str]], demo_set: Path, tmp_path: Path
) -> None:
    url, env = ray_head
    manifest = pd.read_csv(demo_set)
    chosen = pd.concat(
        [
            manifest[~manifest["media_id"].str.startswith("broken")].head(3),
            manifest[manifest["media_id"] == "broken_empty"],
        ]
    )
    chosen = chosen.assign(path=[str((demo_set.parent / p).resolve()) for p in chosen["path"]])
    small = tmp_path / "manifest.csv"
    chosen.to_csv(small, index=False)
    store = tmp_path / "store"
    submit = _submit(
        [
            "ray",
            "job",
            "submit",
            "--address",
            url,
            "--working-dir",
            str(REPO),
            "--",
            sys.executable,
            "jobs/extract.py",
            "--manifest",
            str(small),
            "--out",
            str(store),
            "--set",
            "workers=1",
            "--set",
            "video.fps=2",
            # The faces and openSMILE functionals are what this test checks; the speech
            # extractors have their own tests and would only slow the submitted job down.
            *(arg for name in AUDIO_TEXT_OFF for arg in ("--set", f"{name}.enabled=false")),
        ],
        env,
    )
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in submit.stdout + submit.stderr
    status = subprocess.run(
        ["raypipe", "store", "status", str(store), "--json", "--all"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert status.returncode == 0, status.stderr
    rows = pd.DataFrame(json.loads(status.stdout)["rows"])
    assert len(rows) == 4 * 2  # 4 media x 2 extractors
    failed = rows[rows["status"] == "failed"]
    assert set(failed["media_id"]) == {"broken_empty"}
    assert failed["error"].str.contains("empty").all()
    assert (rows.loc[rows["media_id"] != "broken_empty", "status"] == "ok").all()
