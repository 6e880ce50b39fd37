"""Fitted objects as files that load without executing code.

A run folder keeps fitted models (model records) and fitted fusions. They are written with
skops (``skops.io``): a zip of a JSON description plus NumPy arrays, rebuilt on load from an
explicit list of trusted types only; a file naming any other type (or any function) is
refused, and nothing ever falls back to pickle. Objects holding torch modules turn them into
NumPy state dicts first (:class:`raypipe.classify.neural_heads.NeuralHeadEstimator`), so no
torch pickle is involved either.

A new fitted class that run folders must store is added to :data:`TRUSTED_TYPES` (by an import
path; the class's own module path is trusted with it, so a class re-exported from a package
keeps loading when it moves between modules); the round-trip tests in
``tests/classify/test_artifact_round_trips.py`` show which type is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raypipe.errors import RaypipeError

#: File suffix of a saved artifact.
SUFFIX = ".skops"

#: Types a saved artifact may hold beyond skops' defaults (built-in containers, NumPy arrays and
#: scikit-learn's own estimators): the classifier zoo's extra scikit-learn/LightGBM parts and
#: raypipe's own fitted classes (poolers, encoders, TF-IDF, multilabel wrapper, torch heads as
#: NumPy state, fitted fusions).
TRUSTED_TYPES: tuple[str, ...] = (
    # NumPy / standard library values inside fitted estimators.
    "numpy.dtype",
    "collections.OrderedDict",
    # scikit-learn internals skops does not trust by default.
    "sklearn.tree._tree.Tree",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    # LightGBM (the booster is stored as LightGBM's own model text).
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    # raypipe: classifiers and model-record parts.
    "raypipe.classify.classifiers.svc.CalibratedSVC",
    "raypipe.classify.neural_heads.NeuralHeadEstimator",
    "raypipe.classify.targets.MultiLabelModel",
    "raypipe.classify.pooling.StatPooler",
    "raypipe.classify.pooling.WindowSequencePooler",
    "raypipe.classify.encoding.FisherVectorEncoder",
    "raypipe.classify.encoding.VladEncoder",
    "raypipe.classify.tfidf.TfidfPooler",
    "raypipe.classify.tfidf.TfidfModel",
    # raypipe: fitted fusions.
    "raypipe.fusion.weight_search.WeightedFusion",
    "raypipe.fusion.stacking.FittedStacking",
    "raypipe.fusion.stacking._Constant",
    "raypipe.fusion.cascade.FittedCascade",
)


def trusted_types() -> list[str]:
    """:data:`TRUSTED_TYPES` plus the module path each entry's class really has (imported
    lazily; an entry that does not resolve is trusted by its literal name only)."""
    import importlib

    names = set(TRUSTED_TYPES)
    for entry in TRUSTED_TYPES:
        module, _, attribute = entry.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue
        names.add(f"{cls.__module__}.{cls.__qualname__}")
    return sorted(names)


def dumps(obj: Any) -> bytes:
    """The bytes of ``obj`` as a skops file (raises if it holds a type skops cannot store)."""
    import skops.io as sio

    return sio.dumps(obj)


def untrusted_types(data: bytes) -> list[str]:
    """Types named in artifact bytes that :func:`loads` would refuse."""
    import skops.io as sio

    trusted = set(trusted_types())
    return [t for t in sio.get_untrusted_types(data=data) if t not in trusted]


def loads(data: bytes, source: str | Path = "artifact") -> Any:
    """Rebuild an object written by :func:`dumps`, from trusted types only.

    Raises:
        RaypipeError: the bytes are not a skops file, or name a type that is not trusted
            (one line naming ``source``).
    """
    import skops.io as sio

    try:
        refused = untrusted_types(data)
    except Exception as exc:  # not a zip, no schema, a corrupt entry
        raise RaypipeError(
            f"{source} is not a raypipe artifact ({type(exc).__name__}); re-create it with the "
            "command that wrote it."
        ) from None
    if refused:
        raise RaypipeError(
            f"{source} holds type(s) raypipe does not load ({', '.join(sorted(refused)[:5])}); "
            "it was not written by raypipe, re-create it with the command that wrote it."
        )
    try:
        return sio.loads(data, trusted=trusted_types())
    except Exception as exc:
        raise RaypipeError(
            f"{source} could not be loaded ({type(exc).__name__}: {_first_line(exc)}); "
            "re-create it with the command that wrote it."
        ) from None


def save(path: str | Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically (temporary file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(dumps(obj))
    temporary.replace(target)


def load(path: str | Path) -> Any:
    """Read an object written by :func:`save` (see :func:`loads`)."""
    return loads(Path(path).read_bytes(), path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
