"""The extractor contract: name, version, level, dimension, resources, and ``extract``.

An extractor turns a :class:`~raypipe.media.context.MediaContext` into one media-level row (its
status, counts and, for media-level extractors, the feature vector) and, for frame-level
extractors, a table of frame rows. Its version hashes its code revision, config and weights, so
changing any of them makes stored results stale and a re-run recomputes exactly those.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from raypipe.errors import ConfigError
from raypipe.media.context import MediaContext


@dataclass
class ExtractionResult:
    """Output for one media: the media row (schema: store MEDIA_SCHEMA) and optional frame rows."""

    media_row: dict[str, Any]
    frame_rows: pa.Table | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: Aligned face crops (store CROP_SCHEMA), kept only when an extractor is asked to.
    crop_rows: pa.Table | None = None


SectionT = TypeVar("SectionT", bound=BaseModel)


def settings_section(
    model: type[SectionT], config: SectionT | None, options: dict[str, Any], owner: str
) -> SectionT:
    """``config`` (or ``model``'s defaults) with keyword ``options`` overriding its fields,
    validated like the config file would be.

    Raises:
        TypeError: ``config`` is not a ``model``.
        ConfigError: an option is unknown or out of range (named as ``owner.field``).
    """
    section = config if config is not None else model()
    if not isinstance(section, model):
        raise TypeError(f"{owner} takes a {model.__name__}, got {type(section).__name__}")
    if not options:
        return section
    try:
        return model.model_validate({**section.model_dump(), **options})
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(
            f"{owner}.{field}: {problem['msg']} (see `raypipe config show extract`)."
        ) from None


def numbered_names(prefix: str, count: int) -> list[str]:
    """``count`` names ``{prefix}_000``, ``{prefix}_001``... zero-padded to one width (at least
    3 digits), so they sort in vector order."""
    width = max(3, len(str(max(count - 1, 0))))
    return [f"{prefix}_{i:0{width}d}" for i in range(count)]


class Extractor(ABC, Generic[SectionT]):
    """Base of all extractors. Subclasses set the class attributes and implement ``extract``.

    An extractor is built from its typed config section (its ``config_model``, the section of
    the extract config named after it), where every option is declared once with its default
    and documentation. Keyword options override fields of the section and are validated the
    same way, so ``FaceHogExtractor(cell=4)`` and ``FaceHogExtractor(FaceHogConfig(cell=4))``
    build the same extractor.
    """

    #: Registry name; also the folder name in the store.
    name: ClassVar[str]
    #: 'visual', 'audio' or 'text'.
    modality: ClassVar[str]
    #: 'frame' (rows per sampled frame) or 'media' (one vector per media).
    level: ClassVar[str]
    #: Bumped when the code changes what the extractor outputs.
    revision: ClassVar[int] = 1
    #: Frame sampling a visual extractor runs under (fps, max_side, max_frames), set by
    #: ``registry.build_extractor``; part of the version when set.
    sampling: dict[str, Any] | None = None
    #: The pydantic section holding this extractor's options.
    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: SectionT | None = None, **options: Any) -> None:
        section = settings_section(self.config_model, config, options, self.name)
        #: The validated settings of this extractor (defaults from ``config_model``).
        self.config: SectionT = section  # type: ignore[assignment]

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the feature vector."""

    @property
    def feature_names(self) -> list[str]:
        """Name of each entry of the feature vector, in vector order: ``dim`` unique names.

        A name says what the entry measures (an openSMILE descriptor, a class probability, a
        histogram bin...) so stored vectors can be read as named columns; the store records
        them with the extractor's version. Extractors without a vector (``dim`` 0) have none.
        This default numbers the entries ``{name}_000``, ``{name}_001``...; extractors whose
        entries have meaning override it. Computing the names must be cheap (no model load),
        and they are not part of the version: they describe the output, they do not change it.
        """
        return numbered_names(self.name, self.dim)

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """Settings that change the output (part of the version hash)."""

    @abstractmethod
    def weights_digest(self) -> str:
        """Digest of the weights or library version that determine the output."""

    @property
    def resources(self) -> dict[str, float]:
        """Ray resources one copy of this extractor needs (num_cpus, num_gpus).

        One CPU; on a CUDA ``device`` attribute also ``gpu_fraction`` of a GPU (extractors
        without those attributes are CPU-only).
        """
        device = str(getattr(self, "device", "cpu"))
        fraction = float(getattr(self, "gpu_fraction", 0.0))
        return {"num_cpus": 1.0, "num_gpus": fraction if device.startswith("cuda") else 0.0}

    @property
    def version(self) -> str:
        """Short hash of name, code revision, config and weights."""
        payload = json.dumps(
            {
                "name": self.name,
                "revision": self.revision,
                "config": self.config_dict(),
                "weights": self.weights_digest(),
                **({"sampling": self.sampling} if self.sampling is not None else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    @abstractmethod
    def extract(self, media: MediaContext) -> ExtractionResult:
        """Compute features for one media; raise MediaError for problems with the file."""
