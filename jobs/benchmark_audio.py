"""Benchmark recipe: real-time factor of the audio and text extractors, and the two Whisper
backends on the same audio.

    python jobs/benchmark_audio.py --seconds 60
    python jobs/benchmark_audio.py --memory-minutes 10,60   # openSMILE functionals' memory

Speaks clear English sentences with espeak-ng (pauses between them) into a WAV of --seconds,
then times, on one process and the same signal: the demux, each audio/text extractor (a fresh
media context each, so nothing is shared between them), and the Whisper encoder and decoder of
faster-whisper (the packaged tiny.en, CTranslate2 int8) against openai-whisper with randomly
initialised weights of the same architecture (tiny.en dimensions: same layers, widths and
vocabulary, so compute per step is the same; its text is meaningless, so its decoding is
capped at the number of tokens faster-whisper emitted). The real-time factor is processing
seconds per second of audio (below 1: faster than real time). Prints a Markdown table and a
JSON line for docs/benchmarks.md.

With ``--memory-minutes``, it measures instead the peak resident memory that openSMILE
functionals (eGeMAPSv02) add on tracks of those lengths (the same sentences, repeated), each in
a fresh interpreter with the track already loaded: one ``Smile.process_signal`` call on the
whole track (up to ``--memory-one-call-max`` minutes, default 20) against raypipe's
``OpenSmileExtractor.functionals`` (streamed input, parts of at most 5 minutes), and prints a
table and a JSON line.
"""

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from raypipe.extractors.audio.whisper_models import load_backend, speech_clips
from raypipe.extractors.registry import build_extractor
from raypipe.media.audio import load_audio
from raypipe.media.context import MediaContext
from raypipe.media.speech import speak

SENTENCES = (
    "please open the door for me",
    "we are going to the park after lunch",
    "my brother plays football on sunday",
    "thank you very much for your help",
    "the children are playing in the garden",
    "can you help me find my keys",
)
EXTRACTORS = ("vad", "opensmile", "opensmile_lld", "whisper_transcript", "whisper_embedding",
              "text_embedding")  # fmt: skip


def speech_track(seconds: float) -> np.ndarray:
    """Sentences with 0.6 s pauses, repeated to ``seconds`` of 16 kHz audio."""
    pause = np.zeros(9600, np.float32)
    parts = [np.concatenate([speak(s, 50, 150)[0], pause]) for s in SENTENCES]
    one = np.concatenate(parts)
    n = int(seconds * 16000)
    return np.tile(one, n // len(one) + 1)[:n]


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# Peak memory of one functionals computation, in a fresh interpreter (ru_maxrss: this work only).
MEMORY_PROBE = """
import json, resource, sys, time, warnings
import numpy as np, soundfile as sf
from raypipe.extractors.audio.opensmile_functionals import OpenSmileExtractor
extractor = OpenSmileExtractor()
extractor.functionals(np.zeros(16000, np.float32) + 0.01)  # warm-up: openSMILE loaded
signal = sf.read(sys.argv[1], dtype="float32")[0]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.process_time()
if sys.argv[2] == "one_call":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = extractor._smile.process_signal(signal, 16000).to_numpy()
else:
    values = extractor.functionals(signal)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
                  "cpu_s": time.process_time() - start,
                  "finite": bool(np.isfinite(values).all())}))
"""


def memory_rows(minutes: list[float], folder: Path, one_call_max: float) -> list[dict]:
    """Peak memory growth (MB) and CPU seconds of openSMILE functionals per track length."""
    import subprocess
    import sys

    rows = []
    for length in minutes:
        wav = folder / f"speech-{length:g}min.wav"
        sf.write(str(wav), speech_track(60 * length), 16000, subtype="PCM_16")
        # One call only up to one_call_max minutes (it grows by about 24 MB per minute).
        for mode in ("one_call", "raypipe") if length <= one_call_max else ("raypipe",):
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, str(wav), mode],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"minutes": length, "path": mode, **result,
                         "load_1min": os.getloadavg()[0]})  # fmt: skip
        wav.unlink()
    return rows


def random_openai_tiny_en(folder: Path) -> Path:
    """openai-whisper checkpoint with tiny.en's dimensions and random weights."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                           n_audio_layer=4, n_vocab=51864, n_text_ctx=448, n_text_state=384,
                           n_text_head=6, n_text_layer=4)  # fmt: skip
    torch.manual_seed(0)
    path = folder / "random-tiny-en.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the audio")
    parser.add_argument("--threads", type=int, default=1, help="model threads (both backends)")
    parser.add_argument(
        "--memory-minutes",
        default="",
        help="comma-separated track lengths (minutes): measure openSMILE functionals' memory",
    )
    parser.add_argument(
        "--memory-one-call-max",
        type=float,
        default=20.0,
        help="longest track (minutes) measured with one process_signal call too; 0: none",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.memory_minutes:
        folder = Path(tempfile.mkdtemp(prefix="raypipe-bench-audio-"))
        minutes = [float(m) for m in args.memory_minutes.split(",")]
        rows = memory_rows(minutes, folder, args.memory_one_call_max)
        print("| minutes | path | peak memory added (MB) | CPU s | load |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['minutes']:g} | {r['path']} | {r['peak_mb']:.1f} | {r['cpu_s']:.1f} | "
                  f"{r['load_1min']:.1f} |")  # fmt: skip
        print(json.dumps({"opensmile_memory": rows}))
        return
    import torch

    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="raypipe-bench-audio-"))
    wav = folder / "speech.wav"
    sf.write(str(wav), speech_track(args.seconds), 16000, subtype="PCM_16")
    duration = len(load_audio(wav)) / 16000
    rows: list[tuple[str, float]] = [
        ("demux (PyAV, 16 kHz mono)", timed(lambda: load_audio(wav), 3))
    ]
    for name in EXTRACTORS:
        options = {"cpu_threads": args.threads} if name.startswith("whisper") else {}
        if name == "text_embedding":
            options = {"transcriber": {"cpu_threads": args.threads}}
        extractor = build_extractor(name, options)
        extractor.extract(MediaContext("warm", wav))  # warm-up (first call allocates)
        label = f"{name} (includes its transcription)" if name == "text_embedding" else name
        rows.append((label, timed(lambda e=extractor: e.extract(MediaContext("m", wav)))))
        if name == "text_embedding":
            text = [" ".join(SENTENCES)] * 4
            seconds = timed(lambda e=extractor, t=text: e.encoder.encode(t), 3) / 4
            rows.append(("sentence encoder alone (the transcript's text)", seconds))

    signal = load_audio(wav)
    from raypipe.extractors.audio.vad import VoiceActivity

    clips = speech_clips(VoiceActivity().segments(signal))
    fast = load_backend("faster-whisper", None, None, "cpu", "default", args.threads, 1)
    segments, _ = fast.transcribe(signal, clips, {"temperatures": [0.0]})
    tokens = max(8, int(np.ceil(sum(len(s.text.split()) * 1.4 + 2 for s in segments) / len(clips))))
    slow = load_backend("openai-whisper", None, str(random_openai_tiny_en(folder)), "cpu",
                        "default", args.threads, 1)  # fmt: skip
    chunks = [signal[i : i + 480000] for i in range(0, len(signal), 480000)]
    runs = {
        "faster-whisper": (fast, {"temperatures": [0.0], "max_new_tokens": tokens}),
        "openai-whisper": (
            slow,
            {"temperatures": [0.0], "max_new_tokens": tokens, "language": "en"},
        ),
    }
    compare: dict[str, float] = {
        "faster-whisper encoder": timed(lambda: fast.encode(chunks), 2),
        "openai-whisper encoder": timed(lambda: slow.encode(chunks), 2),
    }
    decoded: dict[str, tuple[int, int]] = {}
    for name, (model, options) in runs.items():
        start = time.perf_counter()
        found, _ = model.transcribe(signal, clips, options)
        compare[f"{name} transcribe"] = time.perf_counter() - start
        decoded[name] = (len(found), sum(s.tokens for s in found))
    print(f"\naudio: {duration:.1f} s of espeak-ng speech, {len(clips)} speech clips; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"{args.threads} model thread(s)\n")  # fmt: skip
    print("| step | seconds | real-time factor |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / duration:.4f} |")
    base_enc = compare["faster-whisper encoder"]
    base_dec = compare["faster-whisper transcribe"]
    print(
        "\n| Whisper tiny.en architecture | seconds | real-time factor | ratio to faster-whisper |"
    )
    print("|---|---|---|---|")
    for name, seconds in compare.items():
        base = base_enc if "encoder" in name else base_dec
        print(f"| {name} | {seconds:.2f} | {seconds / duration:.4f} | {seconds / base:.2f} |")
    print("\n| backend | segments | tokens decoded | ms per token (transcribe time / tokens) |")
    print("|---|---|---|---|")
    for name, (count, emitted) in decoded.items():
        per = 1000 * compare[f"{name} transcribe"] / max(1, emitted)
        print(f"| {name} | {count} | {emitted} | {per:.1f} |")
    print(json.dumps({"duration_s": duration, "clips": len(clips), "tokens_cap": tokens,
                      "decoded": decoded,
                      "extractors": dict(rows), "whisper": compare}))  # fmt: skip


if __name__ == "__main__":
    main()
