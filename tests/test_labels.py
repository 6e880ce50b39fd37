"""Named label spaces: the corpora's classes in their own index order, and label_space()
finding a registered space (with its aliases) from a run's class list."""

from __future__ import annotations

import pytest

from raypipe.labels import (
    ABAW2020_AU8,
    ABAW_AU12,
    ABAW_EXPR7,
    ABAW_EXPR8,
    EMOTIW7,
    LABEL_SPACES,
    LabelSpace,
    label_space,
)
from raypipe.registry import UnknownNameError


def test_registered_label_spaces() -> None:
    assert LABEL_SPACES.names() == [
        "emotiw7", "abaw_expr", "abaw2020_expr", "abaw_au", "abaw2020_au", "cexpr", "meld",
        "gaf",
    ]  # fmt: skip
    assert (*ABAW_EXPR7, "Other") == ABAW_EXPR8 and len(ABAW_EXPR7) == 7
    assert LABEL_SPACES.get("abaw_expr").index("Happiness") == 4
    assert LABEL_SPACES.get("abaw2020_expr").index("happy") == 4  # an alias
    assert len(ABAW_AU12) == 12 and ABAW_AU12[5] == "AU10" and len(ABAW2020_AU8) == 8
    assert LABEL_SPACES.get("abaw2020_au").classes[6] == "AU20"
    for _, space in LABEL_SPACES.items():
        assert all(space.canonical(alias) in space.classes for alias in space.aliases)


def test_label_space_finds_the_registered_space() -> None:
    assert label_space() is LABEL_SPACES.get("emotiw7") and label_space(EMOTIW7).classes == EMOTIW7
    assert label_space(list(ABAW_EXPR7)) is LABEL_SPACES.get("abaw2020_expr")
    plain = label_space(["cat", "dog"])
    assert plain == LabelSpace(("cat", "dog")) and plain.aliases == {}


def test_an_unknown_label_space_names_the_registry() -> None:
    with pytest.raises(UnknownNameError, match=r"registry LABEL_SPACES\); allowed: emotiw7, "):
        LABEL_SPACES.get("affectnet")
