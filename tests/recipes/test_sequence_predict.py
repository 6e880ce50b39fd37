"""`raypipe predict --format abaw-expr` with a run's windowed multimodal sequence model on
videos the run never saw: the model is trained (briefly) on demo clips extracted with a
visual extractor and openSMILE LLD spans; copies of its test clips under new ids are
extracted into a fresh prediction store, and each gets a header line and exactly one line
per native frame (counted by decoding). The new media's frame outputs equal the run's own
``sequence.expr`` outputs for the same clips (same features standardised with the record's
training mean and std, same windows), and so do the classes written on those frames; AU
lines are the run's own AU outputs at the record's thresholds, predicted from the same store
without extracting again. A video without audio, or without a face, alone in a fresh predict
store is scored from the modality it has (the missing one keeps the record's width, masked),
and scoring.csv names the missing modality."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from raypipe.config import ExtractConfig, PredictConfig
from raypipe.config.base import load_config
from raypipe.config.sequence import SequenceConfig
from raypipe.errors import ConfigError
from raypipe.labels import ABAW_AU12, ABAW_EXPR8, LABEL_SPACES
from raypipe.media.datasets.abaw import FrameLabels, frame_indices, write_annotation
from raypipe.media.writer import write_clip
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.predict import model_frame_outputs, run_predict
from raypipe.pipeline.sequence import apply_to_store, run_sequence
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import RunFolder
from tests.conftest import file_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Extract settings of the training store: faces (FER embedding) and openSMILE LLD frames.
EXTRACT = [
    f"{name}.enabled=false"
    for name in ("opensmile", "vad", "whisper_transcript", "whisper_embedding", "text_embedding")
] + ["face_expression.enabled=true", "opensmile_lld.enabled=true", "video.fps=5"]


def _decoded(path: Path) -> tuple[int, float]:
    """The video's frames, counted by decoding every one, and its frame rate (Hz)."""
    with av.open(str(path)) as container:
        rate = float(container.streams.video[0].average_rate)
        return sum(1 for _ in container.decode(video=0)), rate


@pytest.fixture(scope="module")
def sequence_run(
    ray_local: None, demo_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunFolder, pd.DataFrame]:
    """A sequence run (expr and AU, face_expression + opensmile_lld spans) trained for 3
    epochs on demo clips of three classes (two train and one val clip each, every native
    frame labelled with the clip's class and AU1 for every other class) with two test clips
    in the store; and those clips."""
    root = tmp_path_factory.mktemp("sequence_predict")
    source = pd.read_csv(demo_set)
    source = source[~source["media_id"].str.startswith("broken")]
    source = source.assign(path=[str((demo_set.parent / p).resolve()) for p in source["path"]])
    picked = []
    for label in sorted(source["label"].unique())[:3]:
        mine = source[source["label"] == label]
        picked += [mine[mine["split"] == "train"].head(2), mine[mine["split"] == "val"].head(1)]
    picked.append(source[source["split"] == "test"].head(2))
    clips = pd.concat(picked, ignore_index=True)
    manifest = root / "train.csv"
    clips.to_csv(manifest, index=False)
    store = str(root / "store")
    extract = load_config(ExtractConfig, None, [*EXTRACT, "labels=abaw_expr"], {})
    run_extract(extract.model_copy(update={"manifest": manifest, "out": store}))
    space = LABEL_SPACES.get("abaw_expr")
    folders = {"train": "Train_Set", "val": "Validation_Set"}
    for row in clips[clips["split"] != "test"].itertuples():
        frames, _ = _decoded(Path(row.path))
        label = space.index(space.canonical(row.label))
        write_annotation(
            root / "annotations" / "EXPR_Set" / folders[row.split] / f"{row.media_id}.txt",
            FrameLabels.from_values("expr", np.full(frames, label), names=ABAW_EXPR8),
        )
        au = np.zeros((frames, len(ABAW_AU12)), np.int64)
        au[:, 0] = label % 2  # AU1 on for every other class
        write_annotation(
            root / "annotations" / "AU_Set" / folders[row.split] / f"{row.media_id}.txt",
            FrameLabels.from_values("au", au, names=ABAW_AU12),
        )
    sets = [
        f"data.store={store}",
        f"data.annotations={root / 'annotations'}",
        "data.extractors=[face_expression]",
        "data.spans=[{extractor: opensmile_lld, window_s: 0.4}]",
        "tasks=[expr,au]",
        "clip=false",
        "window=4",
        "hop=2",
        "epochs=3",
        "batch_size=4",
        "hidden=8",
        "lr=0.01",
    ]
    run = root / "run"
    run_sequence(load_config(SequenceConfig, None, sets, {"run": str(run)}))
    return RunFolder(str(run)), clips[clips["split"] == "test"]


def test_predict_applies_the_sequence_model_to_unseen_videos(
    sequence_run: tuple[RunFolder, pd.DataFrame], tmp_path: Path
) -> None:
    run, test = sequence_run
    new = pd.DataFrame({"media_id": [f"new_{m}" for m in test["media_id"]], "path": test["path"]})
    manifest = tmp_path / "new.csv"
    new.to_csv(manifest, index=False)
    out, store = tmp_path / "expr", str(tmp_path / "store")
    summary = run_predict(
        PredictConfig(run=run.root, manifest=manifest, out=out, format="abaw-expr", store=store)
    )
    assert summary.media == 2 and summary.prior == 0
    assert summary.scored == {"sequence.expr": 2}
    # Only the new media were extracted into the fresh store, with both of the model's inputs.
    predict_store = FeatureStore(store)
    assert {"face_expression", "opensmile_lld"} <= set(predict_store.extractors())
    assert set(predict_store.frame_table("face_expression")["media_id"]) == set(new["media_id"])

    # The new media's frame outputs are the run's own for the same clips.
    record = run.load_model("sequence.expr")
    outputs = model_frame_outputs(run, predict_store, "sequence.expr", record, len(ABAW_EXPR8))
    own = run.predictions("sequence.expr")
    scoring = pd.read_csv(out / "scoring.csv").set_index("media_id")
    compared = 0
    for original, path in zip(test["media_id"], test["path"], strict=True):
        mine = outputs[outputs["media_id"] == f"new_{original}"].sort_values("timestamp_s")
        theirs = own[own["media_id"] == original].sort_values("start_s")
        assert len(mine) == len(theirs) > 0
        np.testing.assert_allclose(mine["timestamp_s"], theirs["start_s"], atol=1e-6)
        np.testing.assert_allclose(
            np.stack(mine["outputs"].to_numpy()), np.stack(theirs["probs"].to_numpy()), atol=1e-5
        )
        # One header line, then one line per native frame (decoded here).
        lines = (out / f"new_{original}.txt").read_text().splitlines()
        frames, fps = _decoded(Path(path))
        assert lines[0] == ",".join(ABAW_EXPR8)
        assert len(lines) == 1 + frames
        assert scoring.loc[f"new_{original}", "frames"] == frames
        assert scoring.loc[f"new_{original}", "scored_by"] == "sequence.expr"
        # The class written on each frame the run predicted is the run's own class there.
        written = np.array([int(v) for v in lines[1:]])
        at = frame_indices(theirs["start_s"].to_numpy(), fps)
        inside = at < frames
        expected = np.stack(theirs["probs"].to_numpy()).argmax(1)
        np.testing.assert_array_equal(written[at[inside]], expected[inside])
        compared += int(inside.sum())
    assert compared >= 10

    # AU: the same store again (nothing left to extract), 0/1 per unit at the record's
    # thresholds (chosen on val in training) on the run's own AU outputs.
    def features_written() -> set[str]:  # the store's files but its job records
        return {f for f in file_tree(Path(store)) if not f.startswith("jobs")}

    before = features_written()
    au_out = tmp_path / "au"
    run_predict(
        PredictConfig(run=run.root, manifest=manifest, out=au_out, format="abaw-au", store=store)
    )
    assert features_written() == before
    thresholds = np.asarray(run.load_model("sequence.au")["thresholds"])
    own_au = run.predictions("sequence.au")
    decided_otherwise = 0  # units whose 0/1 at 0.5 would differ from the written one
    for original, path in zip(test["media_id"], test["path"], strict=True):
        lines = (au_out / f"new_{original}.txt").read_text().splitlines()
        frames, fps = _decoded(Path(path))
        assert lines[0] == ",".join(ABAW_AU12) and len(lines) == 1 + frames
        written = np.array([[int(v) for v in line.split(",")] for line in lines[1:]])
        theirs = own_au[own_au["media_id"] == original].sort_values("start_s")
        at = frame_indices(theirs["start_s"].to_numpy(), fps)
        inside = at < frames
        expected = (np.stack(theirs["probs"].to_numpy()) >= thresholds).astype(int)
        np.testing.assert_array_equal(written[at[inside]], expected[inside])
        at_half = (np.stack(theirs["probs"].to_numpy()) >= 0.5).astype(int)
        decided_otherwise += int((at_half[inside] != written[at[inside]]).sum())
    # The record's thresholds are applied, not 0.5: here they change some of the outputs.
    assert decided_otherwise > 0, thresholds


def test_a_sequence_model_without_its_weights_is_named_with_the_fix(
    sequence_run: tuple[RunFolder, pd.DataFrame], tmp_path: Path
) -> None:
    run, test = sequence_run
    copy = RunFolder(str(tmp_path / "run"))
    copy.create(run.meta())
    for name in ("sequence.expr",):
        record = run.load_model(name)
        copy.save_model(name, record | {"weights": "recipes/sequence/missing.pt"})
        table = run.predictions(name)
        copy.write_predictions(
            name,
            table["media_id"].to_numpy(object),
            table["split"].to_numpy(object),
            table["label"].to_numpy(),
            np.stack(table["probs"].to_numpy()),
            start_s=table["start_s"].to_numpy(),
        )
    manifest = tmp_path / "new.csv"
    test.head(1).to_csv(manifest, index=False)
    with pytest.raises(ConfigError, match=r"sequence.expr.*missing\.pt.*re-run `raypipe recipe"):
        run_predict(PredictConfig(run=copy.root, manifest=manifest, format="abaw-expr"))


def _silent_copy(source: Path, path: Path) -> Path:
    """The video frames of ``source`` written again without an audio stream."""
    with av.open(str(source)) as container:
        rate = float(container.streams.video[0].average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    write_clip(path, frames, rate)
    with av.open(str(path)) as container:
        assert not container.streams.audio
    return path


def _faceless_clip(path: Path) -> Path:
    """Two seconds of flat grey frames (no face anywhere) with a voiced tone."""
    t = np.arange(32000, dtype=np.float32) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    write_clip(path, np.full((20, 240, 320, 3), 128, np.uint8), 10.0, audio.astype(np.float32))
    return path


@pytest.mark.parametrize(
    ("kind", "absent"), [("silent", "opensmile_lld"), ("faceless", "face_expression")]
)
def test_a_video_missing_a_modality_is_predicted_alone_from_the_others(
    sequence_run: tuple[RunFolder, pd.DataFrame], tmp_path: Path, kind: str, absent: str
) -> None:
    """Alone in a fresh predict store, a video without audio (no valid openSMILE LLD row in
    the store) or without a face (no face_expression vector in the store) still gets the
    record's feature columns (zeros, masked missing as in training): one line per native
    frame from the modality it has, and scoring.csv names the one it lacks."""
    run, test = sequence_run
    source = Path(test["path"].iloc[0])
    if kind == "silent":
        path = _silent_copy(source, tmp_path / "silent.mp4")
    else:
        path = _faceless_clip(tmp_path / "grey.mp4")
    manifest = tmp_path / "one.csv"
    pd.DataFrame({"media_id": [kind], "path": [str(path)]}).to_csv(manifest, index=False)
    out, store = tmp_path / "expr", str(tmp_path / "store")
    summary = run_predict(
        PredictConfig(run=run.root, manifest=manifest, out=out, format="abaw-expr", store=store)
    )
    assert summary.media == 1 and summary.prior == 0
    assert summary.scored == {"sequence.expr": 1}
    # The store really lacks the modality: no face vector, or no valid span row.
    table = FeatureStore(store).frame_table(absent)
    assert set(table["media_id"]) <= {kind}
    if kind == "faceless":
        assert not (table["has_face"].astype(bool) & table["features"].notna()).any()
    else:
        assert table["features"].isna().all()

    frames, _ = _decoded(path)
    lines = (out / f"{kind}.txt").read_text().splitlines()
    assert lines[0] == ",".join(ABAW_EXPR8) and len(lines) == 1 + frames
    assert all(0 <= int(v) < len(ABAW_EXPR8) for v in lines[1:])
    row = pd.read_csv(out / "scoring.csv").set_index("media_id").loc[kind]
    assert row["scored_by"] == "sequence.expr" and row["frames"] == frames
    assert row["predicted_frames"] > 0
    assert row["missing"] == absent
    assert f"scored without {absent}" in row["note"]

    # The frame outputs come from the modality present: finite, every frame masked as lacking
    # the absent one only.
    record = run.load_model("sequence.expr")
    predict_store = FeatureStore(store)
    outputs = model_frame_outputs(run, predict_store, "sequence.expr", record, len(ABAW_EXPR8))
    assert len(outputs) > 0 and set(outputs["missing"]) == {absent}
    assert np.isfinite(np.stack(outputs["outputs"].to_numpy())).all()

    # A store whose extractor gives another width than the record's is still refused.
    present = "face_expression" if absent == "opensmile_lld" else "opensmile_lld"
    wrong = dict(record)
    shifted, offset = [], 0
    for name, start, stop in record["modalities"]:
        width = stop - start + (1 if name == present else 0)
        shifted.append([name, offset, offset + width])
        offset += width
    wrong["modalities"] = shifted
    with pytest.raises(ConfigError, match=r"gives modalities .* extract with the training store"):
        apply_to_store(wrong, run.read_bytes(record["weights"]), predict_store)
