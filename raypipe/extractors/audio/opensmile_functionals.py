"""openSMILE functionals (eGeMAPSv02, ComParE_2016...) per media, per window and per segment."""

from __future__ import annotations

import functools
import itertools
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import OpenSmileConfig
from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.extractors.spans import no_audio_row, span_table
from raypipe.extractors.windows import sliding_windows
from raypipe.media.audio import SAMPLE_RATE, NoAudioError
from raypipe.media.context import MediaContext

log = logging.getLogger(__name__)

#: Shortest audio (seconds) that openSMILE functionals are computed for; shorter gives NaN.
MIN_AUDIO_S = 0.1
#: RMS amplitude (full scale 1.0) below which a track counts as silent (about -80 dBFS).
SILENCE_RMS = 1e-4
#: Samples written to openSMILE at a time (5 s at 16 kHz); its input ring holds four blocks.
STREAM_BLOCK = 80_000
#: Longest span (seconds) given to one openSMILE run. openSMILE keeps every frame of the levels
#: its whole-span functionals read (eGeMAPSv02: about 4 MB per minute of recorded audio, up to
#: 11 MB per minute where the track holds exact digital silence), so longer tracks are cut into
#: equal parts of at most this length, and the track's functionals are the length-weighted mean
#: of the parts' (docs/extractors.md: an approximation for long tracks).
CHUNK_S = 300.0
#: openSMILE config include replacing its standard external wave input
#: (shared/standard_external_wave_input.conf.inc): same component, level and format options,
#: with a ring buffer instead of a level that grows to hold the whole track.
STREAM_INPUT_CONF = """\
[componentInstances:cComponentManager]
instance[extsource].type=cExternalAudioSource

[extsource:cExternalAudioSource]
writer.dmLevel=wave
writer.levelconf.growDyn=0
writer.levelconf.isRb=1
writer.levelconf.nT=\\cm[ringSamples{320000}:samples held by the input ring buffer]
sampleRate=\\cm[sampleRate{16000}:sample rate]
nBits=\\cm[nBits{16}:sample bits]
channels=\\cm[channels{1}:channel size]
"""
#: openSMILE config include replacing shared/BufferMode.conf.inc (the levels whole-track
#: functionals read): the frame count is given up front, so the levels are allocated once at
#: their final size instead of grown by reallocation (which holds the old and new copies).
FULL_BUFFER_CONF = """\
writer.levelconf.growDyn = 1
writer.levelconf.isRb = 0
writer.levelconf.nT = \\cm[fullFrames{1000}:frames the whole-track levels are allocated for]
"""


@functools.cache
def _config_includes() -> tuple[str, str]:
    """Paths of the two includes above, written once per process to a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="raypipe-opensmile-"))
    paths = []
    for name, text in (("stream_input", STREAM_INPUT_CONF), ("full_buffer", FULL_BUFFER_CONF)):
        path = folder / f"{name}.conf.inc"
        path.write_text(text)
        paths.append(str(path))
    return paths[0], paths[1]


def smile(feature_set: str, level: str) -> Any:
    """An ``opensmile.Smile`` for a feature set name and level ('functionals' or 'lld').

    Raises:
        ValueError: the feature set name is not an ``opensmile.FeatureSet`` member.
    """
    import opensmile

    if not hasattr(opensmile.FeatureSet, feature_set):
        allowed = ", ".join(m.name for m in opensmile.FeatureSet)
        raise ValueError(f"unknown openSMILE feature set '{feature_set}'; allowed: {allowed}")
    feature_level = (
        opensmile.FeatureLevel.Functionals
        if level == "functionals"
        else opensmile.FeatureLevel.LowLevelDescriptors
    )
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set), feature_level=feature_level
    )


def stream_functionals(engine: Any, signal: np.ndarray) -> np.ndarray:
    """One openSMILE run of ``engine`` (an ``opensmile.Smile``) over a mono float32 16 kHz
    signal written in blocks of :data:`STREAM_BLOCK` samples while openSMILE runs in a thread.

    The samples, their int16 conversion and the components are those of
    ``engine.process_signal``, so the values are equal; only the input is a ring buffer
    (bounded) instead of a copy of the whole track, and the levels the functionals read are
    allocated once for the track's frame count. Returns the (rows, dim) output, NaN (1, dim)
    when openSMILE emits nothing.
    """
    from opensmile.core.config import config as smile_config
    from opensmile.core.lib import OpenSMILE

    stream_input, full_buffer = _config_includes()
    options = engine._options()  # the options process_signal runs with (sink, buffer modes)
    options.update(
        source=stream_input,
        sampleRate=SAMPLE_RATE,
        nBits=16,
        ringSamples=4 * STREAM_BLOCK,
        bufferModeConf=full_buffer,
        fullFrames=len(signal) // 160 + 1000,  # 10 ms frames, with a margin
    )
    smile_run = OpenSMILE()
    smile_run.initialize(
        config_file=engine.config_path,
        options=options,
        loglevel=engine.loglevel,
        log_file=engine.logfile,
        debug=engine.verbose,
    )
    rows: list[np.ndarray] = []
    smile_run.external_sink_set_callback_ex(
        smile_config.EXTERNAL_OUTPUT_COMPONENT, lambda data, _meta: rows.append(data.copy())
    )
    failed: list[BaseException] = []

    def run() -> None:
        try:
            smile_run.run()
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    runner = threading.Thread(target=run, name="opensmile-run", daemon=True)
    source = smile_config.EXTERNAL_SOURCE_COMPONENT
    try:
        for start in range(0, len(signal), STREAM_BLOCK):
            block = np.array(signal[start : start + STREAM_BLOCK], dtype=np.float32)
            block *= 32768  # as process_signal converts to int16
            data = bytes(block.astype(np.int16))
            while not smile_run.external_audio_source_write_data(source, data):
                if not runner.is_alive():
                    if failed:
                        raise failed[0]
                    if runner.ident is not None:
                        raise RuntimeError(
                            "openSMILE stopped reading before the end of the audio track; "
                            "run opensmile.Smile.process_signal on it to see openSMILE's error"
                        )
                    runner.start()
                time.sleep(0.001)  # the ring is full: openSMILE is reading it
        smile_run.external_audio_source_set_eoi(source)
        if runner.ident is None:
            runner.start()
        runner.join()
    finally:
        if runner.is_alive():
            smile_run.abort()
            runner.join()
        smile_run.free()
    if failed:
        raise failed[0]
    if not rows:
        return np.full((1, len(engine.feature_names)), np.nan, np.float32)
    return np.vstack(rows)


def audio_note(signal: np.ndarray) -> str | None:
    """A remark for tracks whose features are not meaningful: too short, or silent."""
    duration = len(signal) / SAMPLE_RATE
    if duration < MIN_AUDIO_S:
        return f"audio is {duration:.3f} s long (< {MIN_AUDIO_S} s): features are NaN"
    if float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) < SILENCE_RMS:
        return "audio is silent (RMS < 1e-4): features describe silence"
    return None


class OpenSmileExtractor(Extractor):
    """openSMILE functionals of the 16 kHz mono audio track: one vector per media.

    Frame rows (optional) hold the same functionals over sliding windows (kind 'window') and
    over voice-activity speech segments (kind 'segment'), with start and end seconds.

    Options: :class:`~raypipe.config.extract.OpenSmileConfig`.
    """

    name: ClassVar[str] = "opensmile"
    modality: ClassVar[str] = "audio"
    level: ClassVar[str] = "media"

    config_model = OpenSmileConfig

    def __init__(self, config: OpenSmileConfig | None = None, **options: Any) -> None:
        import opensmile

        super().__init__(config, **options)
        c = self.config
        self.feature_set = c.feature_set
        self._smile = smile(c.feature_set, "functionals")
        self._version = opensmile.__version__
        self._feature_names: list[str] = list(self._smile.feature_names)
        self.window_s = float(c.window_s)
        self.hop_s = float(c.hop_s) if c.hop_s else self.window_s
        self.segments = c.segments
        self.chunk_s = CHUNK_S  # longest span of one openSMILE run, seconds
        self._vad = None
        if c.segments:
            from raypipe.extractors.audio.vad import VoiceActivity

            self._vad = VoiceActivity()

    @property
    def dim(self) -> int:
        return len(self._feature_names)

    @property
    def feature_names(self) -> list[str]:
        """openSMILE's own names of the feature set's functionals (``Smile.feature_names``), in
        the order of its output columns, which is the order of the stored values."""
        return list(self._feature_names)

    def config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "feature_set": self.feature_set,
            "level": "functionals",
            "sample_rate": SAMPLE_RATE,
        }
        if self.window_s > 0:
            config.update(window_s=self.window_s, hop_s=self.hop_s)
        if self.segments:
            config["segments"] = True
        config["chunk_s"] = self.chunk_s  # longer tracks: mean of equal parts (new version)
        return config

    def weights_digest(self) -> str:
        digest = f"opensmile-{self._version}"
        return digest + (f"+vad-{self._vad.digest()}" if self._vad else "")

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        """Functionals of a mono float32 signal at 16 kHz, shape (dim,); NaN when the signal is
        shorter than :data:`MIN_AUDIO_S` or openSMILE cannot compute them.

        Up to :attr:`chunk_s` seconds (default :data:`CHUNK_S`): one openSMILE run on the
        whole signal, values equal to ``Smile.process_signal``'s, memory bounded by the
        streamed input (eGeMAPSv02: 4-11 MB per minute of audio). Longer: the signal is
        cut into the fewest equal parts of at most :attr:`chunk_s` seconds and each functional
        is the mean of the parts' values weighted by their lengths (NaN parts left out), so
        memory stays that of one part whatever the track's length.
        """
        if len(signal) < MIN_AUDIO_S * SAMPLE_RATE:
            return np.full(self.dim, np.nan, np.float32)
        limit = int(self.chunk_s * SAMPLE_RATE)
        if len(signal) <= limit:
            return stream_functionals(self._smile, signal).reshape(-1).astype(np.float32)
        n_parts = -(-len(signal) // limit)
        bounds = np.linspace(0, len(signal), n_parts + 1).astype(np.int64)
        parts = np.stack(
            [
                stream_functionals(self._smile, signal[a:b]).reshape(-1)
                for a, b in itertools.pairwise(bounds)
            ]
        ).astype(np.float64)
        lengths = np.diff(bounds).astype(np.float64)[:, None] * np.isfinite(parts)
        with np.errstate(invalid="ignore"):
            mean = np.nansum(parts * lengths, axis=0) / lengths.sum(axis=0)
        return mean.astype(np.float32)

    def _span_rows(self, media: MediaContext, signal: np.ndarray, duration: float) -> Any:
        spans: list[tuple[float, float, str]] = []
        if self.window_s > 0:
            windows = sliding_windows(duration, self.window_s, self.hop_s)
            spans += [(start, end, "window") for start, end in windows]
        if self._vad is not None:
            from raypipe.extractors.audio.vad import speech_segments

            spans += [(s, e, "segment") for s, e in speech_segments(media, self._vad)]
        if not spans:
            return None
        values = [
            self.functionals(signal[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)])
            for s, e, _ in spans
        ]
        tables = []
        for kind in ("window", "segment"):
            picked = [i for i, span in enumerate(spans) if span[2] == kind]
            if picked:
                tables.append(
                    span_table(
                        media.media_id,
                        [spans[i][0] for i in picked],
                        [spans[i][1] for i in picked],
                        kind,
                        np.stack([values[i] for i in picked]),
                    )
                )
        import pyarrow as pa

        table = pa.concat_tables(tables)
        index = pa.array(np.arange(table.num_rows, dtype=np.int32))
        return table.set_column(table.schema.get_field_index("frame_index"), "frame_index", index)

    def extract(self, media: MediaContext) -> ExtractionResult:
        try:
            signal = media.audio
        except NoAudioError as exc:
            return ExtractionResult(no_audio_row(exc))
        duration = len(signal) / SAMPLE_RATE
        values = self.functionals(signal)
        note = audio_note(signal)
        if note is None and not np.isfinite(values).all():
            note = "openSMILE returned non-finite values: check the audio"
        row: dict[str, Any] = {"duration_s": duration, "features": values.tolist()}
        if note:
            row["error"] = note
        return ExtractionResult(row, self._span_rows(media, signal, duration))
