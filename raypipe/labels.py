"""Label spaces are data: an ordered list of class names with optional aliases.

The label spaces of the corpora raypipe reads are registered by name in :data:`LABEL_SPACES`
(``emotiw7``, ``abaw_expr``, ``meld``, ...); a new one is one ``LABEL_SPACES.register`` call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from raypipe.registry import Registry

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


#: Every named label space, in registration order. An entry's classes are in the order its
#: corpus (or challenge) numbers them, so a class index read from an annotation file is a
#: position in ``classes``. Multi-label spaces (action units) name the label columns.
LABEL_SPACES: Registry[LabelSpace] = Registry("LABEL_SPACES", "label space")

LABEL_SPACES.register("emotiw7", LabelSpace(EMOTIW7, EMOTIW7_ALIASES))

#: ABAW expression classes, in the challenge's order (the class index of an EXPR annotation
#: line), from the third ABAW (2022) onwards: the seven basic classes and Other.
ABAW_EXPR8: tuple[str, ...] = (
    "Neutral",
    "Anger",
    "Disgust",
    "Fear",
    "Happiness",
    "Sadness",
    "Surprise",
    "Other",
)
#: ABAW expression classes of ABAW 2020 (FG) and ABAW2 (2021): the same order, without Other.
ABAW_EXPR7: tuple[str, ...] = ABAW_EXPR8[:7]
#: Spellings of other corpora that mean an ABAW expression class.
ABAW_EXPR_ALIASES: dict[str, str] = {
    "angry": "Anger",
    "disgusted": "Disgust",
    "fearful": "Fear",
    "happy": "Happiness",
    "sad": "Sadness",
    "surprised": "Surprise",
}
LABEL_SPACES.register("abaw_expr", LabelSpace(ABAW_EXPR8, ABAW_EXPR_ALIASES))
LABEL_SPACES.register("abaw2020_expr", LabelSpace(ABAW_EXPR7, ABAW_EXPR_ALIASES))

#: The 12 action units of the ABAW AU task from ABAW2 (2021) onwards, in column order.
ABAW_AU12: tuple[str, ...] = (
    "AU1",
    "AU2",
    "AU4",
    "AU6",
    "AU7",
    "AU10",
    "AU12",
    "AU15",
    "AU23",
    "AU24",
    "AU25",
    "AU26",
)
#: The 8 action units of ABAW 2020 (FG), in column order.
ABAW2020_AU8: tuple[str, ...] = ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")
LABEL_SPACES.register("abaw_au", LabelSpace(ABAW_AU12))
LABEL_SPACES.register("abaw2020_au", LabelSpace(ABAW2020_AU8))

#: The seven compound expressions of C-EXPR-DB (the ABAW compound-expression challenge), in
#: the challenge's order.
CEXPR7: tuple[str, ...] = (
    "Fearfully Surprised",
    "Happily Surprised",
    "Sadly Surprised",
    "Disgustedly Surprised",
    "Angrily Surprised",
    "Sadly Fearful",
    "Sadly Angry",
)
# Folder names write the compound as one word, with an underscore or with a hyphen.
LABEL_SPACES.register(
    "cexpr",
    LabelSpace(
        CEXPR7,
        {c.lower().replace(" ", sep): c for c in CEXPR7 for sep in ("", "_", "-")},
    ),
)

#: MELD's seven emotions, in the order of MELD's own label indices (its README's
#: "Labelling": neutral 0, surprise 1, fear 2, sadness 3, joy 4, disgust 5, anger 6).
MELD7: tuple[str, ...] = ("Neutral", "Surprise", "Fear", "Sadness", "Joy", "Disgust", "Anger")
LABEL_SPACES.register(
    "meld",
    LabelSpace(
        MELD7,
        {
            "happy": "Joy",
            "happiness": "Joy",
            "angry": "Anger",
            "sad": "Sadness",
            "surprised": "Surprise",
            "fearful": "Fear",
            "disgusted": "Disgust",
        },
    ),
)

#: Group-level valence of GAF (Group Affect Database) photos.
GAF3: tuple[str, ...] = ("Positive", "Neutral", "Negative")
LABEL_SPACES.register("gaf", LabelSpace(GAF3))


def label_space(classes: Sequence[str] | None = None) -> LabelSpace:
    """The label space for ``classes``: the registered one with exactly these classes in this
    order (with its aliases), else a plain one; the EmotiW 7 classes by default."""
    if classes is None:
        return LABEL_SPACES.get("emotiw7")
    wanted = tuple(classes)
    for _, space in LABEL_SPACES.items():
        if space.classes == wanted:
            return space
    return LabelSpace(wanted)
