"""`raypipe predict --format abaw-*` on videos the run never saw: one annotation file per
video with a header and exactly one line per native frame (counted here by decoding the
video), frames without a prediction filled from their neighbours, a video no model could
score given the training prior and said so, an unreadable file named in scoring.csv; the
run's label space (labels: abaw_expr, read from run.json) reaches the extraction."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raypipe.classify.targets import MultiLabelModel
from raypipe.config import ExtractConfig, PredictConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError
from raypipe.labels import ABAW_EXPR8, LABEL_SPACES
from raypipe.media.datasets.abaw import read_annotation
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.predict import run_predict
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import RunFolder
from tests.conftest import s3_bucket

pytestmark = pytest.mark.integration

LLD_ONLY = [
    f"{name}.enabled=false"
    for name in (
        "face_expression",
        "opensmile",
        "vad",
        "whisper_transcript",
        "whisper_embedding",
        "text_embedding",
    )
] + ["opensmile_lld.enabled=true", "labels=abaw_expr"]


def _decoded_frames(path: Path) -> int:
    """The video's frames, counted by decoding every one (independently of the probe)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _silent_copy(source: Path, target: Path) -> Path:
    """``source`` with its video stream only (remuxed, no audio): no audio model scores it."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream_in = reader.streams.video[0]
        stream_out = writer.add_stream_from_template(stream_in)
        for packet in reader.demux(stream_in):
            if packet.dts is None:
                continue
            packet.stream = stream_out
            writer.mux(packet)
    return target


@pytest.fixture(scope="module")
def frames_run(
    ray_local: None, demo_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunFolder:
    """Frame-level models on openSMILE LLD frames (10 ms) of a few demo clips: expression
    (logistic regression), two AUs (one-vs-rest) and valence/arousal (ridge), trained on
    every frame with the clip's own label; run.json names labels abaw_expr."""
    root = tmp_path_factory.mktemp("predict_frames")
    source = pd.read_csv(demo_set)
    source = source[~source["media_id"].str.startswith("broken")]
    picked = pd.concat([g.head(2) for _, g in source.groupby("label")])
    picked = picked.assign(path=[str((demo_set.parent / p).resolve()) for p in picked["path"]])
    picked = picked.assign(split=["train", "val"] * (len(picked) // 2))
    manifest = root / "train.csv"
    picked.to_csv(manifest, index=False)
    store = str(root / "store")
    run_extract(load_config(ExtractConfig, None, LLD_ONLY, {"manifest": manifest, "out": store}))
    frames = FeatureStore(store).frame_table("opensmile_lld")
    frames = frames[frames["features"].notna()].iloc[::5]
    labels = LABEL_SPACES.get("abaw_expr")
    by_id = picked.set_index("media_id")
    y = np.array([labels.index(by_id.loc[m, "label"]) for m in frames["media_id"]])
    split = by_id.loc[frames["media_id"], "split"].to_numpy()
    x = np.nan_to_num(np.stack(frames["features"].to_numpy()))
    start = frames["timestamp_s"].to_numpy(np.float64)
    ids = frames["media_id"].to_numpy()
    run = RunFolder(root / "run")
    run.create({"store": store, "labels": "abaw_expr", "classes": list(ABAW_EXPR8)})
    spec = {"feature_set": "opensmile_lld", "classifier": "logreg", "params": {}}
    train = split == "train"
    expr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x[train], y[train])
    probs = np.zeros((len(x), 8))
    probs[:, expr.classes_] = expr.predict_proba(x)
    run.save_model(
        "lld.expr",
        {"pipeline": expr, "spec": spec, "task": "classification", "modality": "audio"},
    )
    run.write_predictions("lld.expr", ids, split, y, probs, start_s=start)
    au_truth = np.stack([y == 3, y == 4], axis=1).astype(float)  # Fear, Happiness
    au = MultiLabelModel(
        make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=300))),
        np.array([0.4, 0.6]),
    )
    au.pipeline.fit(x[train], au_truth[train])
    au_record = {"pipeline": au, "spec": spec, "task": "multilabel", "modality": "audio"}
    run.save_model("lld.au", au_record | {"targets": ["AU1", "AU2"], "thresholds": [0.4, 0.6]})
    run.write_predictions(
        "lld.au", ids, split, np.full(len(x), -1), au.predict_proba(x), au_truth, start
    )
    va_truth = np.stack([np.where(y == 4, 0.8, -0.3), np.where(y == 1, 0.7, 0.1)], axis=1)
    va = make_pipeline(StandardScaler(), Ridge()).fit(x[train], va_truth[train])
    run.save_model(
        "lld.va",
        {
            "pipeline": va,
            "spec": spec,
            "task": "regression",
            "modality": "audio",
            "targets": ["valence", "arousal"],
        },
    )
    run.write_predictions("lld.va", ids, split, np.full(len(x), -1), va.predict(x), va_truth, start)
    # As the frames demo's smoothing writes it: the window chosen on val for lld.va.
    run.save_model(
        "fused.smooth.lld.va",
        {"method": "smooth", "member": "lld.va", "task": "regression", "window_s": 1.2},
    )
    return run


@pytest.fixture(scope="module")
def new_videos(demo_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two unseen test clips, one of them again without its audio, and an empty file."""
    folder = tmp_path_factory.mktemp("new_videos")
    source = pd.read_csv(demo_set)
    test = source[(source["split"] == "test") & ~source["media_id"].str.startswith("broken")]
    rows = []
    for row in test.head(2).itertuples():
        rows.append({"media_id": f"new_{row.media_id}", "path": str(demo_set.parent / row.path)})
    silent = _silent_copy(Path(rows[0]["path"]), folder / "silent.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    rows += [
        {"media_id": "new_silent", "path": str(silent)},
        {"media_id": "new_empty", "path": str(folder / "empty.mp4")},
    ]
    manifest = folder / "new.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


@pytest.mark.parametrize("fmt", ["abaw-expr", "abaw-au", "abaw-va"])
def test_one_file_per_video_with_one_line_per_frame(
    frames_run: RunFolder, new_videos: Path, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / fmt
    summary = run_predict(
        PredictConfig(run=frames_run.root, manifest=new_videos, out=out, format=fmt)
    )
    manifest = pd.read_csv(new_videos).set_index("media_id")
    scoring = pd.read_csv(out / "scoring.csv").set_index("media_id")
    assert list(scoring.index) == list(manifest.index)  # every media gets its row
    for media_id in manifest.index[:2]:
        path = out / f"{media_id}.txt"
        lines = path.read_text().splitlines()
        frames = _decoded_frames(Path(manifest.loc[media_id, "path"]))
        assert len(lines) == 1 + frames, (media_id, len(lines), frames)
        assert scoring.loc[media_id, "frames"] == frames
        assert scoring.loc[media_id, "scored_by"] == f"lld.{fmt.split('-')[1]}"
        assert scoring.loc[media_id, "predicted_frames"] > frames / 2
        task = fmt.split("-")[1]
        labels = read_annotation(path, task)  # reads back as a valid annotation file
        assert len(labels) == frames and labels.mask.all()
    # The silent copy: same frames, no model scored it -> the training prior on every line.
    silent = (out / "new_silent.txt").read_text().splitlines()
    assert len(silent) == 1 + _decoded_frames(Path(manifest.loc["new_silent", "path"]))
    assert len(set(silent[1:])) == 1
    assert "training prior" in scoring.loc["new_silent", "note"]
    assert scoring.loc["new_silent", "missing"] == "audio"
    # The empty file: no frame count, so no file, and the row says why.
    assert not (out / "new_empty.txt").exists()
    assert "unreadable" in scoring.loc["new_empty", "note"]
    assert summary.prior == 2 and summary.media == 4


def test_expr_lines_follow_the_models_and_fill_counts_add_up(
    frames_run: RunFolder, new_videos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "expr"
    run_predict(
        PredictConfig(run=frames_run.root, manifest=new_videos, out=out, format="abaw-expr")
    )
    scoring = pd.read_csv(out / "scoring.csv").set_index("media_id")
    first = scoring.index[0]
    header = (out / f"{first}.txt").read_text().splitlines()[0]
    assert header == ",".join(ABAW_EXPR8)
    row = scoring.loc[first]
    assert row["predicted_frames"] + row["filled_frames"] == row["frames"]
    # The prior is the train frames' class frequencies: its most frequent class.
    train = frames_run.predictions("lld.expr").query("split == 'train'")
    expected = int(np.bincount(train["label"], minlength=8).argmax())
    silent = (out / "new_silent.txt").read_text().splitlines()[1:]
    assert set(silent) == {str(expected)}


def test_a_run_without_frame_level_models_of_the_task_is_refused(
    frames_run: RunFolder, new_videos: Path, tmp_path: Path
) -> None:
    run = RunFolder(tmp_path / "run")
    run.create({"store": frames_run.meta()["store"], "classes": list(ABAW_EXPR8)})
    with pytest.raises(ConfigError, match="no frame-level regression model"):
        run_predict(PredictConfig(run=run.root, manifest=new_videos, format="abaw-va"))


def test_annotation_files_written_to_object_storage(
    frames_run: RunFolder, new_videos: Path, s3_server: str
) -> None:
    import boto3

    query = s3_bucket(s3_server, "abaw-out")
    out = f"s3://abaw-out/submission{query}"
    run_predict(PredictConfig(run=frames_run.root, manifest=new_videos, out=out, format="abaw-va"))
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}")
    listed = client.list_objects_v2(Bucket="abaw-out", Prefix="submission/")["Contents"]
    names = sorted(item["Key"] for item in listed)
    ids = pd.read_csv(new_videos)["media_id"].tolist()
    assert names == sorted(
        ["submission/scoring.csv", *(f"submission/{m}.txt" for m in ids if m != "new_empty")]
    )
    body = client.get_object(Bucket="abaw-out", Key=f"submission/{ids[0]}.txt")["Body"].read()
    manifest = pd.read_csv(new_videos).set_index("media_id")
    frames = _decoded_frames(Path(manifest.loc[ids[0], "path"]))
    assert body.decode().splitlines()[0] == "valence,arousal"
    assert len(body.decode().splitlines()) == 1 + frames


def test_the_command_line_writes_the_files_and_refuses_an_unknown_format(
    frames_run: RunFolder, new_videos: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from raypipe.cli import app

    out = tmp_path / "cli"
    args = ["predict", "--run", frames_run.root, "--manifest", str(new_videos), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--format", "abaw-expr"])
    assert result.exit_code == 0, result.output
    assert "frames written" in result.stdout and "training prior" in result.stdout
    assert len(list(out.glob("*.txt"))) == 3 and (out / "scoring.csv").is_file()
    result = CliRunner().invoke(app, [*args, "--format", "abaw-exp"])
    assert result.exit_code != 0
    assert "abaw-expr" in result.output and "format" in result.output


def test_the_smoothing_window_chosen_on_val_is_applied(
    frames_run: RunFolder, new_videos: Path, tmp_path: Path
) -> None:
    def values(smooth: bool) -> np.ndarray:
        out = tmp_path / f"va_{smooth}"
        config = PredictConfig(
            run=frames_run.root, manifest=new_videos, out=out, format="abaw-va", smooth=smooth
        )
        run_predict(config)
        media_id = pd.read_csv(new_videos)["media_id"].iloc[0]
        return read_annotation(out / f"{media_id}.txt", "va").values

    raw, smoothed = values(False), values(True)
    assert raw.shape == smoothed.shape
    # A 1.2 s moving mean: the frame-to-frame changes shrink, the mean level stays.
    assert np.abs(np.diff(smoothed, axis=0)).sum() < 0.5 * np.abs(np.diff(raw, axis=0)).sum()
    np.testing.assert_allclose(smoothed.mean(axis=0), raw.mean(axis=0), atol=0.05)
