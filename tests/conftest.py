"""Shared fixtures: one local Ray per test session (per pytest worker: the suite runs on two,
pyproject's addopts), sized for a 2-core machine."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Credentials for the loopback S3 server (`s3_server`), set before any Ray starts so its
# workers inherit them as a cluster's workers inherit their node's: never in a config file.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "loopback")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "loopback")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# The decoder child's test-only fault rules (raypipe/media/decoder_process.py), also set before
# any Ray starts so the extraction actors' decoder children see them: a file whose path holds
# one of these markers makes its decoder hang, or die, after sending its first window.
os.environ.setdefault(
    "RAYPIPE_DECODER_FAULT", "hang@1:decoder-hangs-midstream,crash@1:decoder-crashes-midstream"
)


#: The shared demo set: 4 clips per class, with the three broken files.
DEMO_SET = {"clips_per_class": 4, "seed": 1, "include_broken": True}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules marked ``slow`` first, in collection order, then the rest: the longest files
    start while the other worker works through the short ones, so both finish at about the
    same time (addopts keep xdist from reordering files by their number of tests)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _raypipe_logging_reset() -> Iterator[None]:
    """Undo what a CLI call made in-process leaves behind: its own handler on the ``raypipe``
    logger (bound to that test's captured stderr) and ``propagate = False``, which would hide
    every later test's raypipe log lines from ``caplog``."""
    yield
    logger = logging.getLogger("raypipe")
    logger.handlers.clear()
    logger.propagate = True


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """Start one local Ray (2 CPUs, small object store) for the whole session of this
    pytest worker."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # never a cluster some `ray start` on this machine recorded
            num_cpus=2,
            object_store_memory=192 * 1024 * 1024,
            include_dashboard=False,
            configure_logging=False,
        )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo set (4 clips per class, with the three broken files) shared by tests."""
    from raypipe.media.demo_set import make_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(root, **DEMO_SET)


@pytest.fixture(scope="session")
def demo_store(ray_local: None, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> str:
    """The demo set (``DEMO_SET``, as ``demo_set`` makes it) extracted once per test run (fps
    2) with the extractors the classifier and fusion tests read: faces, openSMILE
    functionals, transcripts and their embeddings (openSMILE LLDs and Whisper embeddings are
    left out, as `raypipe demo` does).
    Tests only read it. Under xdist the first worker to ask extracts it, with its own copy of
    the set, into the run's shared temporary folder while holding a lock; the other waits and
    reads the same store instead of extracting it again."""
    from filelock import FileLock

    from raypipe.config import ExtractConfig
    from raypipe.config.base import load_config
    from raypipe.media.demo_set import make_demo_dataset
    from raypipe.pipeline.extract import run_extract

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # one run's, never another's
    root = shared / "demo_store"
    with FileLock(str(shared / "demo_store.lock")):
        if not (root / "complete").exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed attempt left
            manifest = make_demo_dataset(root / "demo", **DEMO_SET)
            overrides = [
                "video.fps=2",
                "opensmile_lld.enabled=false",
                "whisper_embedding.enabled=false",
            ]
            out = {"manifest": manifest, "out": str(root / "store")}
            run_extract(load_config(ExtractConfig, None, overrides, out))
            (root / "complete").touch()
    return str(root / "store")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's standalone server) on loopback for the session.
    Yields its ``host:port``; credentials are in the environment (set above). Buckets are
    made by the tests that need them."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


def s3_bucket(endpoint: str, name: str) -> str:
    """Create bucket ``name`` on the loopback server; returns the URI query that points
    pyarrow at it (append to ``s3://name/prefix``)."""
    import boto3

    boto3.client("s3", endpoint_url=f"http://{endpoint}").create_bucket(Bucket=name)
    return f"?endpoint_override={endpoint}&scheme=http"


def file_tree(folder: Path) -> set[str]:
    """Every path under ``folder``, relative to it (what a command left on local disk)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
