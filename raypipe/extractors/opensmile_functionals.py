"""openSMILE functionals (eGeMAPSv02 by default) over a media file's whole audio track."""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar

import numpy as np

from raypipe.errors import MediaError
from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.media.audio import SAMPLE_RATE
from raypipe.media.context import MediaContext

log = logging.getLogger(__name__)

#: Shortest audio (seconds) that openSMILE's functionals are computed for.
MIN_AUDIO_S = 0.1


class OpenSmileExtractor(Extractor):
    """openSMILE functionals of the 16 kHz mono audio track: one vector per media.

    Args:
        feature_set: an ``opensmile.FeatureSet`` member name, e.g. ``eGeMAPSv02`` (88 values)
            or ``ComParE_2016`` (6373 values).
    """

    name: ClassVar[str] = "opensmile"
    modality: ClassVar[str] = "audio"
    level: ClassVar[str] = "media"

    def __init__(self, feature_set: str = "eGeMAPSv02") -> None:
        import opensmile

        if not hasattr(opensmile.FeatureSet, feature_set):
            allowed = ", ".join(m.name for m in opensmile.FeatureSet)
            raise ValueError(f"unknown openSMILE feature set '{feature_set}'; allowed: {allowed}")
        self.feature_set = feature_set
        self._smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, feature_set),
            feature_level=opensmile.FeatureLevel.Functionals,
        )
        self._version = opensmile.__version__
        self.feature_names: list[str] = list(self._smile.feature_names)

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    def config_dict(self) -> dict[str, Any]:
        return {"feature_set": self.feature_set, "level": "functionals", "sample_rate": SAMPLE_RATE}

    def weights_digest(self) -> str:
        return f"opensmile-{self._version}"

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        """Functionals of a mono float32 signal at 16 kHz, shape (dim,)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            values = self._smile.process_signal(signal, SAMPLE_RATE).to_numpy()
        return values.reshape(-1).astype(np.float32)

    def extract(self, media: MediaContext) -> ExtractionResult:
        signal = media.audio
        duration = len(signal) / SAMPLE_RATE
        if duration < MIN_AUDIO_S:
            raise MediaError(
                f"{media.path}: audio track is {duration:.2f} s long, shorter than "
                f"{MIN_AUDIO_S} s; openSMILE needs longer audio."
            )
        values = self.functionals(signal)
        if not np.isfinite(values).all():
            raise MediaError(
                f"{media.path}: openSMILE returned non-finite values for this audio track "
                "(silent or too short); check the audio."
            )
        row = {"status": "ok", "duration_s": duration, "features": values.tolist()}
        return ExtractionResult(media_row=row)
