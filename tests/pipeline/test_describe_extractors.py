"""Where extractors are built to read their versions: on the driver, unless the config asks
for a GPU the driver's machine lacks (a cluster's CPU-only head); then in a Ray task that
reserves the GPU share, on a node that has one."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_cpu_configs_are_described_on_the_driver_without_ray() -> None:
    script = textwrap.dedent(
        """
        import ray
        from raypipe.config import ExtractConfig
        from raypipe.config.base import load_config
        from raypipe.pipeline.extract import build_records, describe_extractors, extractor_specs
        from tests.pipeline.test_extract_pipeline import _only

        config = load_config(ExtractConfig, None, _only("opensmile"), {})
        records, gpus = describe_extractors(config)
        expected, _ = build_records(extractor_specs(config), config.video.model_dump())
        same = [(r.name, r.version) for r in records] == [(r.name, r.version) for r in expected]
        print("RAY", ray.is_initialized(), "SAME", same, "GPUS", gpus)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "RAY False SAME True GPUS 0.0" in done.stdout, done.stdout + done.stderr[-3000:]


def test_a_cuda_config_on_a_machine_without_cuda_is_built_in_a_gpu_task() -> None:
    # A local Ray that advertises one GPU; this machine has no CUDA device, so the build
    # must leave the driver for a task reserving gpu_fraction of a GPU. There the model
    # load fails (no driver here either) and the failure comes back as that task's error.
    script = textwrap.dedent(
        """
        import ray
        from raypipe.config import ExtractConfig
        from raypipe.config.base import load_config
        from raypipe.pipeline.extract import describe_extractors
        from tests.pipeline.test_extract_pipeline import _only

        ray.init(num_cpus=1, num_gpus=1, object_store_memory=80 * 2**20,
                 include_dashboard=False)
        overrides = [*_only("face_expression"), "face_expression.device=cuda",
                     "face_expression.gpu_fraction=0.5"]
        config = load_config(ExtractConfig, None, overrides, {})
        try:
            describe_extractors(config)
        except ray.exceptions.RayTaskError as error:
            print("TASK", type(error).__name__, "build_records" in str(error))
        except Exception as error:
            print("DRIVER", type(error).__name__, error)
        ray.shutdown()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert "TASK" in done.stdout and "True" in done.stdout, done.stdout + done.stderr[-3000:]
