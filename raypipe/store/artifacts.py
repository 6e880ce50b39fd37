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
    "raypipe.recipes.multitask.MultitaskFrameModel",
    "raypipe.recipes.cascade.CascadeFrameModel",
    # raypipe: fitted fusions.
    "raypipe.fusion.methods.weighted.WeightedFusion",
    "raypipe.fusion.methods.stacking.FittedStacking",
    "raypipe.fusion.methods.stacking._Constant",
    "raypipe.fusion.methods.cascade.FittedCascade",
    "raypipe.fusion.targets.TargetWeightedFusion",
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
    """The bytes of ``obj`` as a skops file (raises if it holds a type skops cannot store).

    Fit-time state is left out (see :func:`_without_fit_state`), so a model saved between
    epochs of its fit (a search trial's checkpoint) is stored as it would be after the fit."""
    import skops.io as sio

    return sio.dumps(_without_fit_state(obj, {}))


def _is_fit_state(name: str) -> bool:
    # scikit-learn (1.9+) hangs a callback context on an estimator and its pipeline while
    # ``fit`` runs (``_callback_fit_ctx``, ``_parent_callback_ctx``, ...) and removes it after;
    # it refers back to the estimators (skops cannot store cycles) and is no fitted state.
    return name.startswith("_") and "callback" in name


def _without_fit_state(obj: Any, memo: dict[int, Any]) -> Any:
    """``obj`` with fit-time attributes left out of every object in it: objects that hold
    some (or hold an object that does) are shallow copies, everything else is ``obj``'s own."""
    import numpy as np

    if obj is None or isinstance(obj, (str, bytes, int, float, bool, np.ndarray, np.generic)):
        return obj
    key = id(obj)
    if key in memo:
        return memo[key]
    memo[key] = obj  # a cycle back to obj keeps obj
    result = obj
    if type(obj) in (dict, list, tuple):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        stripped = {k: _without_fit_state(v, memo) for k, v in items}
        if any(
            stripped[k] is not v
            for k, v in (obj.items() if isinstance(obj, dict) else enumerate(obj))
        ):
            values = stripped if isinstance(obj, dict) else list(stripped.values())
            result = type(obj)(values)
    elif isinstance(getattr(obj, "__dict__", None), dict):
        attributes = vars(obj)
        kept = {
            name: _without_fit_state(value, memo)
            for name, value in attributes.items()
            if not _is_fit_state(name)
        }
        if len(kept) != len(attributes) or any(kept[n] is not attributes[n] for n in kept):
            result = object.__new__(type(obj))
            result.__dict__.update(kept)
    memo[key] = result
    return result


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
