"""Faults caused for real on real files, end to end through `raypipe extract`: a re-pointed id, a
media file changed in place, truncated, altered and half-written store files, and a full disk.
Each test shows that nothing good is lost: what is damaged or changed is recomputed, exactly
that, and the results equal the ones computed from the same bytes before."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.pipeline.extract import ExtractSummary, plan_extract, run_extract
from raypipe.store import layout
from raypipe.store.compaction import compact
from raypipe.store.feature_store import FeatureStore
from raypipe.store.verify import verify
from tests.extract_options import only_extractors as _only

pytestmark = pytest.mark.integration

#: Three demo clips of different classes (different faces, voices and words: different bytes).
CLIPS = ("angry_000", "disgust_000", "fear_000")
#: openSMILE functionals (a media row each) and low-level descriptors (a frame row per 10 ms).
EXTRACTORS = ("opensmile", "opensmile_lld")
#: One data file per media and extractor (batches of one, no end-of-job compaction), so a
#: damaged data file holds exactly one media's rows.
BASE_OVERRIDES = ("compact=false", "batch_size=1")
#: The `raypipe` command line, whatever is on PATH.
RAYPIPE = (sys.executable, "-c", "from raypipe.cli import main; main()")


def _write_manifest(path: Path, clips: dict[str, Path]) -> Path:
    rows = [{"media_id": media_id, "path": str(file)} for media_id, file in clips.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _config(manifest: Path, store: Path, *extra: str) -> ExtractConfig:
    overrides = [*_only(*EXTRACTORS), *BASE_OVERRIDES, *extra]
    return load_config(
        ExtractConfig, None, overrides, {"manifest": str(manifest), "out": str(store)}
    )


def _audio_features(store: FeatureStore) -> dict[str, np.ndarray]:
    table = store.media_table("opensmile")
    assert (table["status"] == "ok").all(), table[["media_id", "status", "error"]]
    return {m: np.asarray(f) for m, f in zip(table["media_id"], table["features"], strict=True)}


def _lld_frames(store: FeatureStore) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(timestamps, features) of each media's openSMILE LLD frame rows, in frame order."""
    table = store.frame_table("opensmile_lld").sort_values(["media_id", "frame_index"])
    return {
        media_id: (group["timestamp_s"].to_numpy(), np.stack(group["features"]))
        for media_id, group in table.groupby("media_id")
    }


@dataclass
class Base:
    """The three clips extracted once for the module; tests work on copies."""

    root: Path
    audio: dict[str, np.ndarray]
    lld: dict[str, tuple[np.ndarray, np.ndarray]]


@pytest.fixture(scope="module")
def base(ray_local: None, demo_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("faults_base")
    (root / "media").mkdir()
    clips = {}
    for media_id in CLIPS:
        clips[media_id] = root / "media" / f"{media_id}.mp4"
        shutil.copy2(demo_set.parent / "media" / f"{media_id}.mp4", clips[media_id])
    manifest = _write_manifest(root / "manifest.csv", clips)
    summary = run_extract(_config(manifest, root / "store"))
    assert summary.computed == {"ok": len(CLIPS) * len(EXTRACTORS)}, summary.line()
    store = FeatureStore(str(root / "store"))
    return Base(root, _audio_features(store), _lld_frames(store))


@dataclass
class Work:
    """A private copy of the base: clips (same bytes and times), manifest and store."""

    clips: dict[str, Path]
    manifest: Path
    store_path: Path

    @property
    def store(self) -> FeatureStore:
        return FeatureStore(str(self.store_path))

    def config(self, *extra: str) -> ExtractConfig:
        return _config(self.manifest, self.store_path, *extra)

    def extract(self, *extra: str) -> ExtractSummary:
        return run_extract(self.config(*extra))

    def data_file(self, level: str, extractor: str, media_id: str) -> str:
        """Store-relative data file that holds ``media_id``'s live rows at ``level``."""
        version = self.store.extractors()[extractor].version
        rows = self.store.index(extractor, version, [f"{level}_file"]).set_index("media_id")
        return rows.loc[media_id, f"{level}_file"]

    def media_of(self, extractor: str, relative: str) -> set[str]:
        """Media whose live rows name the data file ``relative``."""
        version = self.store.extractors()[extractor].version
        rows = self.store.index(extractor, version, ["media_file", "frames_file"])
        named = (rows["media_file"] == relative) | (rows["frames_file"] == relative)
        return set(rows.loc[named, "media_id"])


def _copy(base: Base, tmp_path: Path) -> Work:
    shutil.copytree(base.root / "media", tmp_path / "media")  # copy2: same bytes and times
    shutil.copytree(base.root / "store", tmp_path / "store")
    clips = {media_id: tmp_path / "media" / f"{media_id}.mp4" for media_id in CLIPS}
    return Work(clips, _write_manifest(tmp_path / "manifest.csv", clips), tmp_path / "store")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [*RAYPIPE, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _assert_same_lld(found: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, ...]):
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])


def _n_computed(summary: ExtractSummary) -> int:
    return sum(summary.computed.values())


# -- 1. an id re-pointed at another file ------------------------------------------------------
def test_repointed_id_is_recomputed_and_its_old_rows_retired(base, tmp_path) -> None:
    work = _copy(base, tmp_path)
    a, b, c = CLIPS
    _write_manifest(work.manifest, {**work.clips, a: work.clips[b]})
    summary = work.extract()
    # A, for both extractors; nothing else.
    assert summary.computed == {"ok": len(EXTRACTORS)}, summary.line()
    assert summary.skipped == (len(CLIPS) - 1) * len(EXTRACTORS)
    store = work.store
    audio = _audio_features(store)
    np.testing.assert_array_equal(audio[a], base.audio[b])
    np.testing.assert_array_equal(audio[b], base.audio[b])
    np.testing.assert_array_equal(audio[c], base.audio[c])
    lld = _lld_frames(store)
    _assert_same_lld(lld[a], base.lld[b])
    # The old rows of A are retired: readers see A once...
    for name in EXTRACTORS:
        assert (store.media_table(name)["media_id"] == a).sum() == 1
    assert (store.frame_table("opensmile_lld")["media_id"] == a).sum() == len(base.lld[b][0])
    # ... and so does a plain Parquet reader once the store is compacted.
    compact(store)
    plain = pd.read_parquet(work.store_path / "media")
    for name in EXTRACTORS:
        of_a = plain[(plain["extractor"] == name) & (plain["media_id"] == a)]
        assert len(of_a) == 1, f"{name}: {len(of_a)} rows of {a} in {work.store_path}/media"
    of_a = plain[(plain["extractor"] == "opensmile") & (plain["media_id"] == a)]
    np.testing.assert_array_equal(np.asarray(of_a["features"].iloc[0]), base.audio[b])
    frames = pd.read_parquet(work.store_path / "frames")
    assert (frames["media_id"] == a).sum() == len(base.lld[b][0])
    assert verify(store).ok


def test_copied_then_touched_file_is_not_recomputed(base, tmp_path) -> None:
    work = _copy(base, tmp_path)
    c = CLIPS[2]
    # The same bytes under a new path (same time stamp): nothing to compute.
    moved = tmp_path / "elsewhere" / f"{c}.mp4"
    moved.parent.mkdir()
    shutil.copy2(work.clips[c], moved)
    _write_manifest(work.manifest, {**work.clips, c: moved})
    assert sum(p.todo for p in plan_extract(work.config()).extractors) == 0
    # Touched to a new time stamp: the digest still matches, so still nothing to compute.
    stamp = os.stat(moved).st_mtime_ns + 3_600 * 10**9
    os.utime(moved, ns=(stamp, stamp))
    assert os.stat(moved).st_mtime_ns != os.stat(work.clips[c]).st_mtime_ns
    summary = work.extract()
    assert _n_computed(summary) == 0, summary.line()
    assert summary.skipped == len(CLIPS) * len(EXTRACTORS)
    np.testing.assert_array_equal(_audio_features(work.store)[c], base.audio[c])
    # ... and the store now knows the file by its new path.
    assert work.store.read_manifest().set_index("media_id").loc[c, "path"] == str(moved)


# -- 2. a media file changed in place ---------------------------------------------------------
def test_media_file_changed_in_place_is_recomputed(base, tmp_path, caplog) -> None:
    work = _copy(base, tmp_path)
    a, b, _ = CLIPS
    before = os.stat(work.clips[a])
    shutil.copyfile(work.clips[b], work.clips[a])  # A's file now holds B's bytes
    assert os.stat(work.clips[a]).st_mtime_ns != before.st_mtime_ns
    with caplog.at_level("INFO", logger="raypipe"):
        summary = work.extract()
    assert summary.computed == {"ok": len(EXTRACTORS)}, summary.line()
    assert summary.skipped == (len(CLIPS) - 1) * len(EXTRACTORS)
    assert "1 media changed on disk" in caplog.text
    store = work.store
    np.testing.assert_array_equal(_audio_features(store)[a], base.audio[b])
    _assert_same_lld(_lld_frames(store)[a], base.lld[b])
    for name in EXTRACTORS:
        assert (store.media_table(name)["media_id"] == a).sum() == 1


# -- 3. a truncated store data file -----------------------------------------------------------
def test_truncated_data_file_is_found_set_aside_and_recomputed(base, tmp_path) -> None:
    work = _copy(base, tmp_path)
    relative = work.data_file("media", "opensmile", CLIPS[0])
    held = work.media_of("opensmile", relative)
    assert held == {CLIPS[0]}
    damaged = work.store_path / relative
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])

    status = work.store.status()  # reads the index only
    assert len(status) == len(CLIPS) * len(EXTRACTORS) and (status["status"] == "ok").all()
    shown = _cli("store", "status", str(work.store_path), "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["extractors"]) == len(EXTRACTORS)
    with pytest.raises(Exception, match="cannot be read"):
        work.store.media_table("opensmile")  # a reader is told, not given fewer rows

    checked = _cli("store", "verify", str(work.store_path))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert relative in checked.stdout
    repaired = _cli("store", "verify", "--repair", str(work.store_path))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert not damaged.exists()
    assert (work.store_path / layout.QUARANTINE / relative).is_file()

    summary = work.extract()
    assert summary.computed == {"ok": len(held)}, summary.line()
    assert summary.skipped == len(CLIPS) * len(EXTRACTORS) - len(held)
    report = verify(work.store)
    assert report.ok, report.damaged
    audio = _audio_features(work.store)
    assert set(audio) == set(CLIPS)
    for media_id in CLIPS:
        np.testing.assert_array_equal(audio[media_id], base.audio[media_id])


# -- 4. flipped bytes inside a frames file ----------------------------------------------------
def test_altered_frames_file_is_found_by_checksum_and_recomputed(base, tmp_path) -> None:
    work = _copy(base, tmp_path)
    victim = CLIPS[2]
    relative = work.data_file("frames", "opensmile_lld", victim)
    assert work.media_of("opensmile_lld", relative) == {victim}
    altered = work.store_path / relative
    data = bytearray(altered.read_bytes())
    size = len(data)
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(x ^ 0xFF for x in data[middle : middle + 16])
    altered.write_bytes(bytes(data))
    assert altered.stat().st_size == size

    found = verify(work.store)
    assert [(d.path, d.kind) for d in found.damaged] == [(relative, "data")]
    assert "checksum differs" in found.damaged[0].problem
    repaired = verify(work.store, repair=True)
    assert repaired.moved == [f"{layout.QUARANTINE}/{relative}"]
    assert sum(repaired.retired.values()) == 1

    summary = work.extract()
    assert summary.computed == {"ok": 1}, summary.line()
    assert summary.skipped == len(CLIPS) * len(EXTRACTORS) - 1
    assert verify(work.store).ok
    lld = _lld_frames(work.store)
    assert set(lld) == set(CLIPS)
    for media_id in CLIPS:
        _assert_same_lld(lld[media_id], base.lld[media_id])


# -- 5. a truncated store manifest file -------------------------------------------------------
def test_truncated_manifest_file_is_named_and_recorded_again(base, tmp_path, caplog) -> None:
    work = _copy(base, tmp_path)
    parts = work.store.manifest_files()
    assert len(parts) == 1
    damaged = work.store_path / parts[0]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])

    # The default end-of-job compaction folds the manifest too, around the damaged file.
    with caplog.at_level("WARNING", logger="raypipe"):
        summary = work.extract("compact=true")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(damaged) in message for message in warned), warned
    assert _n_computed(summary) == 0, summary.line()
    assert summary.skipped == len(CLIPS) * len(EXTRACTORS)

    manifest = work.store.read_manifest().set_index("media_id")["path"]
    assert manifest.to_dict() == {m: str(p) for m, p in work.clips.items()}
    repaired = verify(work.store, repair=True)
    assert [d.path for d in repaired.damaged] == parts
    caplog.clear()
    with caplog.at_level("WARNING", logger="raypipe"):
        assert len(work.store.read_manifest()) == len(CLIPS)
        assert verify(work.store).ok
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# -- 6. a full disk ---------------------------------------------------------------------------
#: Size of the small disk: room for the store's records and one or two media, not three.
DISK_KB = 130
_SUMMARY = "media; computed: "


def _parse_summary(stdout: str) -> tuple[int, dict[str, int], int]:
    """(media, computed by status, already up to date) of `raypipe extract`'s summary line."""
    line = next(line for line in stdout.splitlines() if _SUMMARY in line)
    media, rest = line.split(" media; computed: ", 1)
    computed_text, rest = rest.split("; already up to date: ", 1)
    computed = {}
    if computed_text != "none":
        for part in computed_text.split(", "):
            count, status = part.split(" ", 1)
            computed[status] = int(count)
    return int(media), computed, int(rest.split(" ", 1)[0])


@pytest.mark.slow
def test_full_disk_fails_cleanly_and_the_rerun_completes(demo_set, tmp_path) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("`unshare` (util-linux) is needed to mount a small tmpfs; install it")
    disk = tmp_path / "disk"
    disk.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    clips = {m: demo_set.parent / "media" / f"{m}.mp4" for m in CLIPS}
    manifest = _write_manifest(tmp_path / "manifest.csv", clips)
    store = disk / "store"
    sets = [*_only("opensmile_lld"), "batch_size=1", "ray.num_cpus=2", "ray.object_store_mb=128"]
    extract = shlex.join(
        [
            *RAYPIPE,
            "extract",
            "--manifest",
            str(manifest),
            "--out",
            str(store),
            *[arg for s in sets for arg in ("--set", s)],
        ]
    )
    verify_cmd = shlex.join([*RAYPIPE, "store", "verify", str(store)])
    d, lg = shlex.quote(str(disk)), shlex.quote(str(logs))
    script = f"""
mount -t tmpfs -o size={DISK_KB}k tmpfs {d} || exit 90
{extract} >{lg}/1.out 2>{lg}/1.err; echo $? >{lg}/1.rc
find {d} -name '{layout.TEMPORARY_PREFIX}*' >{lg}/1.tmp
cp -a {shlex.quote(str(store))} {lg}/after1
mount -o remount,size=64m {d} || exit 91
{extract} >{lg}/2.out 2>{lg}/2.err; echo $? >{lg}/2.rc
find {d} -name '{layout.TEMPORARY_PREFIX}*' >{lg}/2.tmp
{verify_cmd} >{lg}/3.out 2>{lg}/3.err; echo $? >{lg}/3.rc
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    if done.returncode in (90, 91) or not (logs / "1.rc").exists():
        pytest.fail(
            f"could not mount a {DISK_KB} KiB tmpfs in a private mount namespace (`unshare -rm`;"
            f" rc {done.returncode}): {done.stderr.strip()}"
        )

    def read(name: str) -> str:
        return (logs / name).read_text()

    # The first run fails partway, with one line naming the write that failed.
    assert read("1.rc").strip() == "2", read("1.out") + read("1.err")
    errors = [line for line in read("1.err").splitlines() if line.startswith("error:")]
    assert len(errors) == 1, read("1.err")
    assert "Cannot write" in errors[0] and str(store) in errors[0], errors[0]
    assert "no space left on device" in errors[0] and "free space" in errors[0], errors[0]
    assert "Traceback" not in read("1.err"), read("1.err")
    assert read("1.tmp") == "", f"temporary files left: {read('1.tmp')}"
    after1 = FeatureStore(str(logs / "after1"))
    version = after1.extractors()["opensmile_lld"].version
    committed = set(after1.index("opensmile_lld", version)["media_id"])
    assert 0 < len(committed) < len(CLIPS), f"tmpfs of {DISK_KB} KiB: {committed} committed"
    assert verify(after1).ok  # what the failed job committed is whole

    # The second run, with room, computes only what was missing; the store verifies.
    assert read("2.rc").strip() == "0", read("2.out") + read("2.err")
    media, computed, skipped = _parse_summary(read("2.out"))
    assert (media, computed, skipped) == (
        len(CLIPS),
        {"ok": len(CLIPS) - len(committed)},
        len(committed),
    ), read("2.out")
    assert read("2.tmp") == "", f"temporary files left: {read('2.tmp')}"
    assert read("3.rc").strip() == "0", read("3.out") + read("3.err")
    assert "0 damaged" in read("3.out")
