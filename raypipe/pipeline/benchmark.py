"""Extraction throughput: raypipe on Ray Data against a plain sequential loop, same media.

Every path runs the same extractors on the same files into fresh stores, in one process run, so
the ratios compare like with like on this machine:
- ``sequential``: a fresh process, media after media, torch using every core (its default);
- ``sequential_1_thread``: the same loop with one torch thread (the per-core baseline);
  both are timed from process start, so imports, model loading and the first calls' warm-up
  count, as they do for raypipe's actors;
- ``raypipe``: :func:`raypipe.pipeline.extract.run_extract` on the connected Ray;
- ``raypipe_command``: `raypipe extract` in a fresh process, timed from its start like the
  loops (:func:`command_seconds`): Ray's start included where the job needs Ray, none for a
  small job that runs in its own process;
- stages alone (sequentially, torch on every core): ``decode`` (probe + decode in the decoder
  child), ``detect`` (MTCNN on the decoded frames), ``embed`` (FER CNN on the face crops).

:func:`memory_by_length` measures the peak resident memory of one worker process (and of its
decoder child) extracting a long, generated low-resolution clip, for several lengths.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from raypipe.config import ExtractConfig
from raypipe.extractors.process import process_media
from raypipe.extractors.registry import build_extractor
from raypipe.media.context import MediaContext
from raypipe.media.manifest import load_manifest
from raypipe.pipeline.extract import extractor_specs, run_extract
from raypipe.store.feature_store import FeatureStore

log = logging.getLogger(__name__)


def machine() -> str:
    """One line describing this machine: CPU model, cores, memory, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{memory_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        memory = "?"
    return f"{cpu}, {os.cpu_count()} cores, {memory} RAM, Python {platform.python_version()}"


def load_average() -> float:
    """The machine's 1-minute load average (other work competing for the CPUs)."""
    return round(os.getloadavg()[0], 2)


def _sequential_loop(manifest: str, video: dict[str, Any], specs: list, root: str) -> int:
    """The plain loop: build the extractors, then process the media one after another."""
    store = FeatureStore(root)
    store.initialise()
    extractors = [build_extractor(name, options) for name, options in specs]
    for row in pd.read_csv(manifest).itertuples(index=False):
        process_media(MediaContext(row.media_id, row.path, **video), extractors, store)
    # Sampled frames over visual extractors.
    return int(sum(_frames(store, e.name, e.version).sum() for e in extractors))


def _frames(store: FeatureStore, extractor: str, version: str) -> pd.Series:
    """Frames sampled per media by one extractor version (0 for media-level ones)."""
    return pd.to_numeric(store.index(extractor, version, ["frames"])["frames"]).fillna(0)


def _sequential(
    config: ExtractConfig, manifest: Path, root: Path, threads: int
) -> tuple[float, int]:
    """Seconds of the plain loop in a fresh process with ``threads`` torch threads (from
    process start: imports, model loading and warm-up included, as raypipe's actors pay them)."""
    payload = json.dumps(
        {
            "manifest": str(manifest),
            "video": config.video.model_dump(),
            "specs": extractor_specs(config),
            "root": str(root),
            "threads": threads,
        }
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "raypipe.pipeline.benchmark", "sequential", payload],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, int(done.stdout.strip().splitlines()[-1])


def command_seconds(config: ExtractConfig, limit: int | None = None) -> dict[str, Any]:
    """Seconds of `raypipe extract` as a user runs it, in a fresh process from its start
    (imports, Ray's start where the job needs Ray, models, work, compaction), on the first
    ``limit`` media of the config's manifest into a fresh store, and how it ran: ``ran`` is
    'in process' for a job small enough to need no Ray (:func:`raypipe.pipeline.extract.
    runs_in_process`), else 'ray'. Call it before this process starts Ray (the command would
    otherwise start a second local Ray beside it)."""
    import yaml

    manifest, _ = load_manifest(config.manifest)
    if limit is not None:
        manifest = manifest.head(limit)
    with tempfile.TemporaryDirectory() as scratch:
        subset, settings = Path(scratch) / "manifest.csv", Path(scratch) / "extract.yaml"
        manifest.to_csv(subset, index=False)
        dumped = config.model_dump(mode="json", exclude={"manifest", "out"})
        settings.write_text(yaml.safe_dump(dumped))
        command = "import sys; from raypipe.cli import main; sys.argv[0] = 'raypipe'; main()"
        args = [sys.executable, "-c", command, "extract", "--config", str(settings)]
        args += ["--manifest", str(subset), "--out", f"{scratch}/store", "--json"]
        start = time.perf_counter()
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"raypipe extract failed:\n{done.stderr[-3000:]}")
    local = "in this process" in done.stderr
    return {"seconds": seconds, "ran": "in process" if local else "ray"}


def stage_seconds(config: ExtractConfig, manifest: pd.DataFrame) -> dict[str, float]:
    """Seconds of each visual stage alone over the media: decode, detect, embed (FER CNN)."""
    from raypipe.extractors.visual.fer_cnn import FerEmbedder
    from raypipe.faces.analysis import shared_detector
    from raypipe.faces.crop import crop_face, largest_face_index

    settings = config.face_expression
    detector = shared_detector(settings.min_face_size, settings.device)
    embedder = FerEmbedder(device=settings.device)
    windows = []
    start = time.perf_counter()
    for row in manifest.itertuples(index=False):
        media = MediaContext(row.media_id, row.path, **config.video.model_dump())
        try:
            windows.extend(w.frames for w in media.windows())
        except Exception as exc:  # broken media are part of the set; they fail in every path
            log.debug("stage timing skips %s: %s", row.path, exc)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    found = [detector.detect(frames) for frames in windows]
    detect = time.perf_counter() - start
    crops = [
        crop_face(frame, det.boxes[largest_face_index(det)], settings.crop_size, settings.margin)
        for frames, dets in zip(windows, found, strict=True)
        for frame, det in zip(frames, dets, strict=True)
        if len(det)
    ]
    start = time.perf_counter()
    for first in range(0, len(crops), 64):
        embedder.embed(np.stack(crops[first : first + 64]))
    embed = time.perf_counter() - start
    return {"decode": decode, "detect": detect, "embed": embed}


def benchmark_extraction(
    config: ExtractConfig, limit: int | None = None, command: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Time the sequential loops, raypipe's Ray Data pipeline and each stage, on the same media.

    Returns seconds, media/s and frames/s of each path and the ratios to the sequential loop.
    ``command`` (:func:`command_seconds`, taken before Ray started) adds the row
    ``raypipe_command``: `raypipe extract` as a user runs it, timed from process start like
    the sequential loop.
    """
    manifest, _ = load_manifest(config.manifest)
    if limit is not None:
        manifest = manifest.head(limit)
    results: dict[str, Any] = {
        "machine": machine(),
        "media": len(manifest),
        "load_before": load_average(),
        "extractors": [name for name, _ in extractor_specs(config)],
    }
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        subset = Path(scratch) / "manifest.csv"
        manifest.to_csv(subset, index=False)
        cores = os.cpu_count() or 1
        seconds["sequential"], frames = _sequential(config, subset, Path(scratch) / "seq", cores)
        seconds["sequential_1_thread"], _ = _sequential(config, subset, Path(scratch) / "seq1", 1)
        start = time.perf_counter()
        run_extract(config.model_copy(update={"manifest": subset, "out": f"{scratch}/raypipe"}))
        seconds["raypipe"] = time.perf_counter() - start
        if command is not None:
            seconds["raypipe_command"] = command["seconds"]
        for stage, value in stage_seconds(config, manifest).items():
            seconds[f"stage_{stage}"] = value
    results["frames"] = frames
    for name, value in seconds.items():
        results[name] = {
            "seconds": round(value, 2),
            "media_per_s": round(len(manifest) / value, 3),
            "frames_per_s": round(frames / value, 2),
            "ratio_to_sequential": round(seconds["sequential"] / value, 2),
        }
    results["speedup"] = results["raypipe"]["ratio_to_sequential"]
    if command is not None:
        results["raypipe_command"]["ran"] = command["ran"]
    results["load_after"] = load_average()
    return results


def as_markdown(results: dict[str, Any]) -> str:
    """A Markdown table of :func:`benchmark_extraction` results."""
    names = [k for k, v in results.items() if isinstance(v, dict) and "seconds" in v]
    rows = pd.DataFrame([{"path": name, **results[name]} for name in names])
    header = "| " + " | ".join(rows.columns) + " |"
    lines = [header, "|" + "---|" * len(rows.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows.itertuples(index=False)]
    return "\n".join(lines)


# -- peak memory by video length -----------------------------------------------------------------


def _long_clip(
    path: Path, seconds: int, fps: float = 5.0, size: tuple[int, int] = (160, 120)
) -> Path:
    """A low-resolution clip of ``seconds`` (``size`` width x height, pixels): a real face
    (scikit-image's astronaut, 56 pixels) drifting over a grey background; written once."""
    from PIL import Image
    from skimage import data

    from raypipe.media.writer import write_clip

    if path.is_file():
        return path
    face = np.asarray(Image.fromarray(data.astronaut()[0:260, 110:370]).resize((56, 56)))
    width, height = size
    frames = np.full((int(seconds * fps), height, width, 3), 110, np.uint8)
    for t in range(len(frames)):
        left = 20 + int((width - 96) / 2 * (1 + np.sin(t / 25)))
        frames[t, 30:86, left : left + 56] = face
    write_clip(path, frames, fps=fps)
    return path


def _measure_one(path: str, video: dict[str, Any], specs: list) -> dict[str, float]:
    """Extract one media in this process; peak RSS (MiB) of this process and of its decoder."""
    from raypipe.media.decoder_process import DecoderProcess

    extractors = [build_extractor(name, options) for name, options in specs]
    with tempfile.TemporaryDirectory() as scratch:
        store = FeatureStore(scratch)
        store.initialise()
        decoder = DecoderProcess(video.pop("decode_timeout_s", 120.0))
        start = time.perf_counter()
        outcome = process_media(
            MediaContext("long", path, decoder=decoder, **video), extractors, store
        )
        elapsed = time.perf_counter() - start
        frames = int(max(_frames(store, e.name, e.version).max() for e in extractors))
        # The child's own high-water mark (RUSAGE_CHILDREN would count this process's memory
        # copied at fork time).
        status = Path(f"/proc/{decoder.pid}/status").read_text()
        decoder_kib = int(status.split("VmHWM:")[1].split()[0])
        decoder.close()
    return {
        "status": outcome[0].status,
        "frames": frames,
        "seconds": round(elapsed, 1),
        "worker_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "decoder_peak_mib": round(decoder_kib / 1024, 1),
    }


def memory_by_length(
    config: ExtractConfig,
    lengths_s: tuple[int, ...] = (60, 600),
    folder: Path | None = None,
    size: tuple[int, int] = (160, 120),
) -> dict[int, dict[str, float]]:
    """Peak memory of a fresh worker process extracting a generated clip of each length
    (``size`` width x height, pixels).

    Every sampled frame is kept (``max_frames`` unset), so only the window bounds memory.
    """
    folder = Path(folder or tempfile.mkdtemp(prefix="raypipe-long-"))
    folder.mkdir(parents=True, exist_ok=True)
    video = {**config.video.model_dump(), "max_frames": None}
    specs = extractor_specs(config)
    out = {}
    for length in lengths_s:
        clip = _long_clip(folder / f"long-{length}s-{size[0]}x{size[1]}.mp4", length, size=size)
        payload = json.dumps({"path": str(clip), "video": video, "specs": specs})
        done = subprocess.run(
            [sys.executable, "-m", "raypipe.pipeline.benchmark", "memory", payload],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        out[length] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


if __name__ == "__main__":
    arguments = json.loads(sys.argv[2])
    if sys.argv[1] == "sequential":
        torch.set_num_threads(arguments["threads"])
        found = _sequential_loop(
            arguments["manifest"], arguments["video"], arguments["specs"], arguments["root"]
        )
        sys.stdout.write(f"{found}\n")
    else:
        torch.set_num_threads(1)
        result = _measure_one(arguments["path"], arguments["video"], arguments["specs"])
        sys.stdout.write(json.dumps(result) + "\n")
