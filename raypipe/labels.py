"""Label spaces are data: an ordered list of class names with optional aliases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: The seven EmotiW / AFEW classes in their customary order.
EMOTIW7: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

#: Spellings found in public corpora that mean one of the EmotiW classes.
EMOTIW7_ALIASES: dict[str, str] = {
    "anger": "Angry",
    "disgusted": "Disgust",
    "fearful": "Fear",
    "happiness": "Happy",
    "happy": "Happy",
    "sadness": "Sad",
    "surprised": "Surprise",
    "neutral": "Neutral",
}


@dataclass(frozen=True)
class LabelSpace:
    """An ordered set of class names; a class's index is its position in ``classes``."""

    classes: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"Label space has duplicate classes: {list(self.classes)}")

    def __len__(self) -> int:
        return len(self.classes)

    def canonical(self, name: str) -> str | None:
        """Return the class name for ``name`` (exact, case-insensitive, or alias), else None."""
        text = str(name).strip()
        if text in self.classes:
            return text
        lowered = {c.lower(): c for c in self.classes}
        if text.lower() in lowered:
            return lowered[text.lower()]
        alias = self.aliases.get(text.lower())
        return alias if alias in self.classes else None

    def index(self, name: str) -> int:
        """Index of a class name; raises KeyError for unknown names."""
        canonical = self.canonical(name)
        if canonical is None:
            raise KeyError(name)
        return self.classes.index(canonical)

    def indices(self, names: Iterable[str]) -> list[int]:
        """Indices of many class names."""
        return [self.index(name) for name in names]


def label_space(classes: Sequence[str] | None = None) -> LabelSpace:
    """The label space for ``classes``, or the EmotiW 7 classes (with aliases) by default."""
    if classes is None or tuple(classes) == EMOTIW7:
        return LabelSpace(EMOTIW7, EMOTIW7_ALIASES)
    return LabelSpace(tuple(classes))
