"""The extraction actor pool grows with an autoscaling cluster that starts with no workers.

The job runs in a process of its own (tests/pipeline/autoscaling_extract.py), started in a new
process session: this session's tests share one embedded Ray (the ``ray_local`` fixture), a
process holds at most one Ray connection, and shutting that Ray down mid-session would break
every fixture that holds objects of it. The cluster's daemons (head, autoscaler, the fake
worker nodes and their workers) all stay in that process session, so ending it ends exactly
them, whatever the job did; Ray's own ``ray stop`` would also end other sessions' Ray.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.pipeline.autoscaling_extract import FAKE_ID_PREFIX
from tests.process_session import end_session

HERE = Path(__file__).resolve().parent

#: Seconds the job may take (cluster start about 20 s, one more start of up to 40 s when the
#: first fails under load, the extraction 40 to 90 s on 2 cores).
LIMIT_S = 300


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(LIMIT_S + 60)
def test_pool_grows_onto_nodes_the_autoscaler_starts(demo_set: Path, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    store = tmp_path / "store"
    # Ray's socket paths must stay short: its temp folder goes directly under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="rp-as-", dir="/tmp")
    job = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "autoscaling_extract.py"),
            str(demo_set),
            str(store),
            str(result),
            temp_dir,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = job.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        job.kill()
        output, _ = job.communicate()
    finally:
        end_session(job.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert job.returncode == 0, output[-4000:]
    outcome = json.loads(result.read_text())

    from raypipe.store.feature_store import FeatureStore

    # Every media was processed: the 28 clips ok, the three broken files failed.
    media = outcome["media"]
    assert outcome["computed"] == {"ok": media - 3, "failed": 3}, outcome
    status = FeatureStore(str(store)).status(problems_only=False)
    assert len(status) == media and set(status["status"]) == {"ok", "failed"}
    # The head has no CPUs, so every result came from a worker node the autoscaler started,
    # and more than one of them ran actors.
    workers = outcome["nodes"]
    assert outcome["head"] not in workers
    assert all(node.startswith(FAKE_ID_PREFIX) for node in workers)
    assert sum(workers.values()) == media
    assert len(workers) >= 2, f"the pool stayed on one node: {outcome}"
