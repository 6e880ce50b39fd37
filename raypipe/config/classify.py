"""`raypipe tune-classifiers`: feature sets, poolings, classifiers and the search."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from raypipe.config.base import LabelsSetting, StrictModel
from raypipe.config.runtime import RayConfig
from raypipe.config.tracking import TrackingConfig

log = logging.getLogger(__name__)


def _registered_pooling(name: str) -> str:
    # Checked against the live registry, so a pooling registered by a plugin is accepted too.
    from raypipe.classify.pooling import POOLINGS

    if name not in POOLINGS:
        raise ValueError(POOLINGS.unknown_message(name))
    return name


def _registered_classifier(name: str) -> str:
    from raypipe.classify.classifiers import CLASSIFIERS

    if name not in CLASSIFIERS:
        raise ValueError(CLASSIFIERS.unknown_message(name))
    return name


#: A pooling name registered in raypipe.classify.pooling.POOLINGS.
Pooling = Annotated[str, AfterValidator(_registered_pooling)]
#: A classifier name registered in raypipe.classify.classifiers.CLASSIFIERS.
ClassifierName = Annotated[str, AfterValidator(_registered_classifier)]
#: Old fields holding some classifiers' grids, still read: field -> (classifier, parameter,
#: whether the field holds a single value rather than a list).
DEPRECATED_GRID_FIELDS = {
    "logreg_c": ("logreg", "C", False),
    "lightgbm_num_leaves": ("lightgbm", "num_leaves", False),
    "lightgbm_n_estimators": ("lightgbm", "n_estimators", True),
}
TASK_METRIC_NAMES = {
    "classification": ("macro_f1", "accuracy", "uar"),
    "multilabel": ("mean_f1",),
    "regression": ("ccc",),
}


class FeatureSetConfig(StrictModel):
    """One stored feature set that classifiers are trained on."""

    extractor: str
    """Extractor name in the store (e.g. face_expression, opensmile)."""
    pooling: list[Pooling] = ["meanstd"]
    """Frame-to-media pooling(s) to try for frame-level extractors (ignored for media-level):
    mean, max, std, meanstd, pct (10/50/90th percentiles), fisher (Fisher vectors of a diagonal
    GMM fitted on train), vlad (VLAD over k-means centres fitted on train), seq (window
    sequences, read only by the sequence heads lstm, gru, attention, netvlad); for a
    transcription extractor (whisper_transcript) also tfidf: TF-IDF of each media's
    transcript, vocabulary fitted on the train split and saved with the models."""


class TuneClassifiersConfig(LabelsSetting):
    """`raypipe tune-classifiers`: Ray Tune over feature set x pooling x classifier x params."""

    store: str | None = None
    """Feature store written by `raypipe extract`."""
    run: str | Path | None = None
    """Run folder for models, predictions and the report (created if absent): a local path or
    a URI such as s3://bucket/run (Ray Tune then keeps its experiments there too)."""
    feature_sets: list[FeatureSetConfig] = [
        FeatureSetConfig(extractor="face_expression", pooling=["meanstd", "max"]),
        FeatureSetConfig(extractor="opensmile"),
        FeatureSetConfig(extractor="text_embedding"),
        FeatureSetConfig(extractor="whisper_transcript", pooling=["tfidf"]),
    ]
    """Feature sets to train on."""
    task: Literal["classification", "multilabel", "regression"] = "classification"
    """classification (the manifest's label), multilabel (0/1 columns of targets, e.g. action
    units; a threshold per label chosen on val) or regression (real columns of targets, e.g.
    valence and arousal; scored by CCC)."""
    targets: Path | None = None
    """Table (csv or parquet) with media_id and the target_columns; needed for multilabel and
    regression (empty cells: media not labelled)."""
    target_columns: list[str] = []
    """Label or target columns of targets used by multilabel and regression tasks."""
    classifiers: list[ClassifierName] = ["logreg", "lightgbm"]
    """Classifiers to search (registered in raypipe.classify.classifiers.CLASSIFIERS): logreg,
    linsvc, rbfsvc, rf, lightgbm, mlp (vector per media) and lstm, gru, attention, netvlad
    (sequence heads over 'seq' pooling)."""
    param_grid: dict[str, dict[str, list[Any]]] = {}
    """Values tried per classifier and parameter, replacing that parameter's built-in values
    (docs/classifiers.md), e.g. {logreg: {C: [0.1, 1]}, rf: {max_depth: [4, null]},
    lightgbm: {num_leaves: [4, 15], n_estimators: [200]}, mlp: {hidden: [64]}}."""
    search: Literal["grid", "random", "optuna"] = "grid"
    """grid: every combination; random: num_samples combinations drawn (by seed) from it;
    optuna: num_samples trials chosen by Optuna's TPE sampler (seeded by seed) from the same
    combinations. TPE proposes each trial from the trials finished before it, so with several
    trials at once two runs can propose differently; max_concurrent_trials=1 makes an optuna
    search reproducible (grid and random searches are at any concurrency)."""
    num_samples: int = Field(default=24, ge=1)
    """Trial budget of the random and optuna searches."""
    time_budget_s: float | None = Field(default=None, gt=0)
    """End the search after this many seconds: no trial starts after it and the running ones
    are stopped (not recorded); a re-run goes on with the rest."""
    early_stopping: Literal["asha", "none"] = "asha"
    """asha: stop poor torch-head trials early by their per-epoch validation metric;
    scikit-learn trials fit in one step and are never stopped. ASHA compares a trial with
    those that reached the same epoch before it, so with several torch-head trials at once
    two runs can stop different trials; max_concurrent_trials=1 (or early_stopping none)
    makes the search reproducible."""
    max_epochs: int = Field(default=30, ge=1)
    """Epochs of the torch heads (mlp and sequence heads); ASHA's longest trial."""
    grace_epochs: int = Field(default=5, ge=2)
    """Epochs every torch-head trial runs before ASHA may stop it."""
    pooling_components: int = Field(default=8, ge=1, le=256)
    """Gaussians of the Fisher-vector GMM and centres of VLAD."""
    seq_window: int = Field(default=4, ge=1)
    """Frames per window of 'seq' pooling."""
    seq_hop: int = Field(default=2, ge=1)
    """Frames between window starts of 'seq' pooling."""
    seq_steps: int = Field(default=8, ge=1)
    """Windows kept per media by 'seq' pooling (padded when fewer)."""
    tfidf: dict[str, Any] = {}
    """Options of 'tfidf' pooling (scikit-learn TfidfVectorizer): ngram_range, min_df, max_df,
    max_features, sublinear_tf, stop_words, norm, use_idf, smooth_idf, binary, lowercase,
    analyzer. Fitted on the train split's transcripts."""
    balance: Literal["class_weight", "oversample", "none"] = "class_weight"
    """Class imbalance: weight classes inversely to their frequency, oversample smaller
    classes' train rows (classification), or neither."""
    metric: Literal["macro_f1", "accuracy", "uar", "mean_f1", "ccc"] = "macro_f1"
    """Validation metric that picks the best configuration (classification: macro_f1,
    accuracy, uar; multilabel: mean_f1; regression: ccc). Left at macro_f1, multilabel and
    regression tasks use their own."""
    cpus_per_trial: float = Field(default=1.0, gt=0)
    """CPUs Ray reserves for each trial."""
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    """Trials running at once; unset: as many as the CPUs allow."""
    configs_per_trial: int | None = Field(default=None, ge=1)
    """Configurations of one-shot classifiers (every one but the torch heads) fitted one
    after another in one Tune trial of a grid or random search, so that short fits do not
    each pay a trial's overhead; each keeps its own predictions, ledger entry and scores, as
    if it had been a trial of its own. 1: one configuration per trial. Unset: about 4 trials
    per concurrent trial (max_concurrent_trials, else the CPUs), or 1 when tracking is on
    (each configuration its own tracked run). Torch heads and optuna searches always run one
    configuration per trial."""
    seed: int = 0
    """Random seed of every model (scikit-learn random_state, LightGBM, torch heads), of the
    fitted poolings (Fisher GMM, VLAD k-means), of oversampling and of the random and optuna
    searches."""
    tracking: TrackingConfig = TrackingConfig()
    """Experiment tracking (MLflow, TensorBoard, W&B); off by default."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @model_validator(mode="before")
    @classmethod
    def _deprecated_grid_fields(cls, data: Any) -> Any:
        """Map the old logreg_c, lightgbm_num_leaves and lightgbm_n_estimators fields into
        param_grid (a param_grid entry for the same parameter wins; a field of a classifier
        that is not searched is dropped, as it was always ignored)."""
        if not isinstance(data, dict) or not any(k in data for k in DEPRECATED_GRID_FIELDS):
            return data
        data = dict(data)
        searched = data.get("classifiers", cls.model_fields["classifiers"].default)
        grid = {
            k: dict(v) if isinstance(v, dict) else v
            for k, v in (data.get("param_grid") or {}).items()
        }
        for field, (classifier, parameter, single) in DEPRECATED_GRID_FIELDS.items():
            if field not in data:
                continue
            value = data.pop(field)
            if not isinstance(searched, list) or classifier not in searched:
                continue
            values = [value] if single or not isinstance(value, list | tuple) else list(value)
            log.warning(
                "config field %s is deprecated; set param_grid.%s.%s instead (read as %s)",
                field,
                classifier,
                parameter,
                values,
            )
            entry = grid.setdefault(classifier, {})
            if isinstance(entry, dict):
                entry.setdefault(parameter, values)
        data["param_grid"] = grid
        return data

    @field_validator("tfidf")
    @classmethod
    def _check_tfidf(cls, options: dict[str, Any]) -> dict[str, Any]:
        from raypipe.classify.tfidf import ALLOWED_OPTIONS

        unknown = sorted(set(options) - ALLOWED_OPTIONS)
        if unknown:
            raise ValueError(
                f"option(s) {', '.join(unknown)} are not supported; allowed: "
                f"{', '.join(sorted(ALLOWED_OPTIONS))}"
            )
        return options

    @model_validator(mode="after")
    def _check(self) -> TuneClassifiersConfig:
        allowed = TASK_METRIC_NAMES[self.task]
        if self.task != "classification" and self.metric == "macro_f1":
            # A multilabel or regression task left at the default metric takes its own.
            self.metric = allowed[0]  # type: ignore[assignment]
        if self.metric not in allowed:
            raise ValueError(
                f"metric '{self.metric}' does not fit task {self.task}; allowed: "
                f"{', '.join(allowed)}"
            )
        if self.task != "classification" and (self.targets is None or not self.target_columns):
            raise ValueError(f"task {self.task} needs targets (a table) and target_columns")
        from raypipe.classify.classifiers import CLASSIFIERS, sequence_classifiers
        from raypipe.classify.pooling import POOLINGS

        poolings = {p for f in self.feature_sets for p in f.pooling}
        sequence_poolings = sorted(p for p in poolings if POOLINGS.get(p).sequence)
        sequence = [c for c in self.classifiers if CLASSIFIERS.get(c).sequence]
        if sequence and not sequence_poolings:
            raise ValueError(
                f"classifiers {', '.join(sequence)} read window sequences; add 'seq' to a "
                "feature set's pooling"
            )
        if sequence_poolings and not sequence:
            raise ValueError(
                f"pooling '{sequence_poolings[0]}' is read only by "
                f"{', '.join(sequence_classifiers())}; add one to classifiers"
            )
        unknown = sorted(set(self.param_grid) - set(self.classifiers))
        if unknown:
            raise ValueError(
                f"param_grid names {', '.join(unknown)}, not in classifiers "
                f"({', '.join(self.classifiers)})"
            )
        return self
