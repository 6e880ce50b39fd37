"""Peak memory of demux, voice activity and openSMILE on 1 vs 10 minutes of speech."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.audio.conftest import needs_espeak, spoken, write_wav

# Runs in a fresh interpreter so ru_maxrss measures only this work.
PROBE = """
import json, resource, sys
import numpy as np
from raypipe.extractors.audio.opensmile_functionals import OpenSmileExtractor
from raypipe.extractors.audio.opensmile_lld import OpenSmileLldExtractor
from raypipe.extractors.audio.vad import VoiceActivity
from raypipe.media.audio import load_audio

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

smile, lld, vad = OpenSmileExtractor(), OpenSmileLldExtractor(), VoiceActivity()
if sys.argv[3] != "default":
    smile.chunk_s = float(sys.argv[3])
vad.segments(load_audio(sys.argv[2]))  # warm up on a short file
base = peak()
signal = load_audio(sys.argv[1])
segments = vad.segments(signal)
after_vad = peak()
starts, _, _ = lld.lld(signal)
after_lld = peak()
values = smile.functionals(signal)
print(json.dumps({"demux_vad_mb": after_vad - base, "lld_mb": after_lld - after_vad,
                  "lld_frames": len(starts), "functionals_mb": peak() - after_lld,
                  "segments": len(segments),
                  "finite": bool(np.isfinite(values).all() and abs(values).sum() > 0)}))
"""


def _measure(path: Path, warm: Path, chunk_s: float | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(warm), str(chunk_s or "default")],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_espeak
def test_memory_grows_with_the_track_only(tmp_path: Path) -> None:
    speech = spoken("we are going to the park after lunch", lead_s=0.5, tail_s=0.5)
    warm = write_wav(tmp_path / "warm.wav", speech)
    results = {}
    for minutes in (1, 10):
        n = minutes * 60 * 16000
        path = write_wav(tmp_path / f"{minutes}min.wav", np.tile(speech, n // len(speech) + 1)[:n])
        results[minutes] = _measure(path, warm)
    parts = _measure(path, warm, chunk_s=120.0)  # the 10 minutes in five 2-minute parts
    one, ten = results[1], results[10]
    assert one["finite"] and ten["finite"], "functionals of the long tracks are not all finite"
    assert ten["segments"] > 8 * one["segments"]
    # Demux and VAD hold the 16 kHz track (3.8 MB per minute) and one copy while joining it.
    assert ten["demux_vad_mb"] - one["demux_vad_mb"] < 9 * 3.84 * 2 + 30
    # LLDs run in 60 s blocks: beyond the rows themselves (25 floats per 10 ms), flat.
    assert ten["lld_frames"] > 9.9 * one["lld_frames"]
    assert ten["lld_mb"] < 9 * 6 + 40
    # Functionals: the track is streamed into openSMILE, which keeps only the frames of the
    # levels its whole-span functionals read (about 11 MB per minute for this speech, whose
    # pauses are exact zeros), in parts of at most 5 minutes; one process_signal call on the
    # whole track took about 24 MB per minute (245 MB here), one 10-minute run 126 MB.
    assert ten["functionals_mb"] < 80
    # Parts bound it whatever the length: ten minutes in 2-minute parts add what one
    # 2-minute part does.
    assert parts["finite"]
    assert parts["functionals_mb"] < 2 * 12 + 10
