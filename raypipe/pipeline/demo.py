"""`raypipe demo`: the whole path on generated data, on an embedded local Ray by default."""

from __future__ import annotations

import logging
from pathlib import Path

from raypipe.config import DemoConfig, ExtractConfig, FuseConfig, TuneClassifiersConfig
from raypipe.errors import ConfigError, RaypipeError
from raypipe.fusion.smoothed_models import smooth_frame_models
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.provenance import record_run
from raypipe.pipeline.runtime import ray_session
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.report.writer import metrics_table, write_report
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

#: Frame-level recipes the frames demo runs (those registered in RECIPES), in order; each
#: trains on the stored face features and the annotation folder and writes per-frame models.
#: Frame recipes registered later (the windowed sequence model, the cascade) are added here.
FRAME_DEMO_RECIPES: tuple[str, ...] = ("multitask",)
#: Task of each frame-level prediction kind, and the score the demo prints for it.
_TASK_SCORE = {"classification": "macro_f1", "multilabel": "mean_f1", "regression": "ccc"}


def demo_extract_config(config: DemoConfig, manifest: Path, store: str) -> ExtractConfig:
    """The extraction the clip demo runs: the default extractors but openSMILE LLDs and
    Whisper encoder states, which its classifiers do not read (left out to keep it short)."""
    return ExtractConfig.model_validate(
        {
            "manifest": manifest,
            "out": store,
            "ray": config.ray,
            "opensmile_lld": {"enabled": False},
            "whisper_embedding": {"enabled": False},
        }
    )


def run_demo(config: DemoConfig) -> tuple[Path, list[str]]:
    """Generate the demo set, extract, tune classifiers, fuse and report.

    Returns the run folder and lines summarising per-modality and fused test scores.
    With ``config.task`` 'frames', runs :func:`run_frames_demo` instead.
    """
    if config.task == "frames":
        return run_frames_demo(config)
    from raypipe.media.demo_set import make_demo_dataset

    out = config.out.resolve()
    manifest = out / "data" / "manifest.csv"
    if manifest.exists():
        log.info("demo data already in %s; reusing it", manifest.parent)
    else:
        log.info("generating demo media in %s", out / "data")
        manifest = make_demo_dataset(
            out / "data",
            clips_per_class=config.clips_per_class,
            seed=config.seed,
            include_broken=config.include_broken,
        )
    store = str(out / "store")
    run = out / "run"
    with ray_session(config.ray):
        summary = run_extract(demo_extract_config(config, manifest, store))
        log.info("extract: %s", summary.line())
        best = run_tune_classifiers(
            TuneClassifiersConfig(store=store, run=run, seed=config.seed, ray=config.ray)
        )
        # The demo's words tell negative from positive from neutral: the ABAW grouping of the
        # negative classes gives the coarse-to-fine cascade something to work with.
        fusion = run_fuse(
            FuseConfig(
                run=run,
                num_samples=config.fusion_samples,
                seed=config.seed,
                ray=config.ray,
                methods=[*FuseConfig().methods, "cascade"],
                cascade={"groups": {"Negative": ["Angry", "Disgust", "Fear", "Sad"]}},
            )
        )
    folder = RunFolder(run)
    record_run(folder, "demo", config)
    write_report(folder)
    table = metrics_table(folder)
    test = table[table["split"] == "test"].set_index("model")
    modalities = best.set_index("model")["modality"]
    lines = ["demo results on the held-out test split (fusions fitted on val):"]
    for model in fusion["members"]:
        row = test.loc[model]
        lines.append(
            f"  {modalities.get(model, '?'):7s} {model:40s} macro-F1 {row['macro_f1']:.3f}  "
            f"accuracy {row['accuracy']:.3f}"
        )
    for record in fusion["methods"].values():
        row = test.loc[record["name"]]
        mark = "  <- selected by val CV" if record["selected"] else ""
        lines.append(
            f"  {'fused':7s} {record['name']:40s} macro-F1 {row['macro_f1']:.3f}  "
            f"accuracy {row['accuracy']:.3f}  (val CV {record['scores']['val_cv']['macro_f1']:.3f})"
            f"{mark}"
        )
    return run, lines


def run_frames_demo(config: DemoConfig) -> tuple[Path, list[str]]:
    """The frame-level demo: generate the Aff-Wild2-shaped set
    (:mod:`raypipe.media.frames_demo_set`), extract face-expression features at
    ``config.sample_fps``, run the frame-level recipes (:data:`FRAME_DEMO_RECIPES`), smooth
    every per-frame model with its window chosen on val (:func:`smooth_frame_models`) and
    write the report.

    Returns the run folder and lines with each model's test score per task.
    """
    from raypipe.media.frames_demo_set import make_frames_demo_dataset
    from raypipe.recipes.registry import RECIPES

    out = config.out.resolve()
    data = out / "frames-data"
    manifest = data / "manifest.csv"
    if manifest.exists():
        log.info("frames demo data already in %s; reusing it", data)
    else:
        log.info("generating frames demo media in %s", data)
        manifest = make_frames_demo_dataset(data, videos=config.videos, seed=config.seed)
    store = str(out / "frames-store")
    run = out / "frames-run"
    recipes = [name for name in FRAME_DEMO_RECIPES if name in RECIPES]
    unknown = sorted(set(config.recipes) - set(recipes))
    if unknown:
        raise ConfigError(
            f"Config field 'recipes' names {unknown}, which the frames demo does not run; "
            f"give settings for {recipes} only."
        )
    if not recipes:
        raise RaypipeError(
            f"No frame-level recipe of {list(FRAME_DEMO_RECIPES)} is registered in RECIPES; "
            "the frames demo needs one (reinstall raypipe)."
        )
    with ray_session(config.ray):
        # Only the face-expression features are read by the frame recipes.
        sections = {name: {"enabled": False} for name in _AUDIO_TEXT_EXTRACTORS}
        extract = ExtractConfig.model_validate(
            {
                "manifest": manifest,
                "out": store,
                "ray": config.ray,
                "video": {"fps": config.sample_fps},
                **sections,
            }
        )
        summary = run_extract(extract)
        log.info("extract: %s", summary.line())
        for name in recipes:
            recipe = RECIPES.get(name)
            recipe_config = recipe.config.model_validate(
                {
                    **config.recipes.get(name, {}),
                    "run": str(run),
                    "data": {"store": store, "annotations": str(data / "annotations")},
                    "seed": config.seed,
                    "ray": config.ray,
                }
            )
            log.info("frames demo: recipe %s", name)
            recipe.load_runner()(recipe_config)
    folder = RunFolder(run)
    smoothed = smooth_frame_models(folder)
    record_run(folder, "demo", config)
    write_report(folder)
    table = metrics_table(folder)
    test = table[table["split"] == "test"].set_index("model")
    lines = ["frames demo results on the held-out test videos (per sampled frame):"]
    for model, record in smoothed.items():
        for name, note in ((record["member"], ""), (model, f"  (window {record['window_s']:g} s)")):
            metric = _TASK_SCORE[record["task"]]
            score = test.loc[name, metric] if name in test.index else float("nan")
            lines.append(f"  {name:40s} {metric} {score:.3f}{note}")
    return run, lines


#: The audio and text extractors the frames demo leaves out (its videos are silent).
_AUDIO_TEXT_EXTRACTORS = (
    "opensmile",
    "opensmile_lld",
    "vad",
    "whisper_transcript",
    "whisper_embedding",
    "text_embedding",
)
