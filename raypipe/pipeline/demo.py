"""`raypipe demo`: the whole path on generated data, on an embedded local Ray by default."""

from __future__ import annotations

import logging
from pathlib import Path

from raypipe.config import DemoConfig, ExtractConfig, FuseConfig, TuneClassifiersConfig
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.provenance import record_run
from raypipe.pipeline.runtime import ray_session
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.report.writer import metrics_table, write_report
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)


def run_demo(config: DemoConfig) -> tuple[Path, list[str]]:
    """Generate the demo set, extract, tune classifiers, fuse and report.

    Returns the run folder and lines summarising per-modality and fused test scores.
    """
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
        # The demo's classifiers read faces, openSMILE functionals and transcript embeddings;
        # the extractors they do not read are left out to keep the demo short.
        extract = ExtractConfig.model_validate(
            {
                "manifest": manifest,
                "out": store,
                "ray": config.ray,
                "opensmile_lld": {"enabled": False},
                "whisper_embedding": {"enabled": False},
            }
        )
        summary = run_extract(extract)
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
