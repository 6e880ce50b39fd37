"""`raypipe extract` on Ray Data: manifest rows -> actor pool of extractors -> feature store
(a small job without a cluster runs in this process instead: :func:`runs_in_process`).

Each actor holds the models once (on CPU, or a fraction of a GPU each) and processes batches of
``batch_size`` media. Its decoder child process (:mod:`raypipe.media.decoder_process`) probes and
decodes beside it, one window ahead, so decoding overlaps detection and embedding, and a file
that hangs or crashes a native decoder fails alone without taking the actor down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

from raypipe.config import ExtractConfig
from raypipe.errors import ConfigError, MediaError
from raypipe.extractors.base import Extractor
from raypipe.extractors.process import process_media
from raypipe.extractors.registry import EXTRACTORS, build_extractor
from raypipe.labels import LABEL_SPACES
from raypipe.media.context import MediaContext
from raypipe.media.decoder_process import shared_decoder
from raypipe.media.manifest import load_manifest
from raypipe.media.prefetch import prefetch
from raypipe.media.remote import local_copy
from raypipe.pipeline.pool import PoolSize, oversubscription, pool_size
from raypipe.pipeline.progress import progress_bar
from raypipe.pipeline.provenance import provenance
from raypipe.pipeline.runtime import cluster_reach, ray_session
from raypipe.store.compaction import compact
from raypipe.store.feature_store import ExtractorRecord, FeatureStore, MediaResult
from raypipe.store.fingerprint import fingerprint
from raypipe.store.planning import Plan, plan_work
from raypipe.store.schema import STATUS_FAILED

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    """Counts of one extraction run."""

    store: str
    media: int
    computed: Counter = field(default_factory=Counter)
    skipped: int = 0
    manifest_issues: int = 0
    #: Media whose manifest row has a problem now but whose stored results were kept.
    kept_despite_manifest: int = 0
    #: Results (media x extractor) computed on each Ray node, by node id ('local' for a
    #: small job run in this process, :func:`runs_in_process`).
    nodes: Counter = field(default_factory=Counter)

    def line(self) -> str:
        """A one-line human summary."""
        done = ", ".join(f"{n} {status}" for status, n in sorted(self.computed.items())) or "none"
        return (
            f"{self.media} media; computed: {done}; already up to date: {self.skipped} "
            f"(media x extractor); manifest issues: {self.manifest_issues}"
            + (
                f" (stored results kept for {self.kept_despite_manifest} media)"
                if self.kept_despite_manifest
                else ""
            )
            + f"; store: {self.store}"
        )


def extractor_specs(config: ExtractConfig) -> list[tuple[str, dict[str, Any]]]:
    """The (name, options) of each enabled extractor in ``config``.

    Every field of :class:`ExtractConfig` named after a registered extractor holds that
    extractor's settings; its ``enabled`` flag selects it and the other fields are its options.
    """
    specs: list[tuple[str, dict[str, Any]]] = []
    for name in EXTRACTORS:
        settings = getattr(config, name, None)
        if settings is not None and settings.enabled:
            specs.append((name, settings.model_dump(exclude={"enabled"})))
    return specs


def job_pool(
    config: ExtractConfig, media: int, gpus_per_worker: float, reach: dict[str, float] | None
) -> PoolSize:
    """The actor pool of a job computing ``media`` media (:func:`raypipe.pipeline.pool.
    pool_size`), where ``reach`` is the most the cluster can grow to (None: not reported)."""
    return pool_size(
        workers=config.workers,
        min_workers=config.min_workers,
        max_workers=config.max_workers,
        media=media,
        cpus_per_worker=config.cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        decode_tasks=config.decode_tasks,
        reach=reach,
    )


def gpus_per_actor(extractors: Sequence[Extractor]) -> float:
    """GPUs an extraction actor reserves: the largest share any of its extractors asks for."""
    return max((e.resources.get("num_gpus", 0.0) for e in extractors), default=0.0)


def _record(extractor: Extractor) -> ExtractorRecord:
    return ExtractorRecord(
        name=extractor.name,
        version=extractor.version,
        level=extractor.level,
        dim=extractor.dim,
        modality=extractor.modality,
        # The sampling is kept beside the options so a later job (predict) can rebuild the
        # same version from the store alone.
        config={
            **extractor.config_dict(),
            **({"sampling": extractor.sampling} if extractor.sampling else {}),
        },
        feature_names=list(extractor.feature_names),
    )


def build_extractors(
    specs: list[tuple[str, dict[str, Any]]], video: dict[str, Any]
) -> dict[str, Extractor]:
    """The extractors of ``specs`` by name, their models loaded."""
    return {name: build_extractor(name, options, video) for name, options in specs}


def build_records(
    specs: list[tuple[str, dict[str, Any]]], video: dict[str, Any]
) -> tuple[list[ExtractorRecord], float]:
    """Build the extractors of ``specs`` (their models included) and describe them: their
    store records (versions) and the GPU share one extraction actor reserves."""
    extractors = list(build_extractors(specs, video).values())
    return [_record(e) for e in extractors], gpus_per_actor(extractors)


def _requests_gpu(specs: list[tuple[str, dict[str, Any]]]) -> float:
    """The GPU share the config asks for (a ``cuda`` device and its ``gpu_fraction``), read
    from the options alone."""
    shares = [
        float(options.get("gpu_fraction") or 0.0)
        for _, options in specs
        if str(options.get("device", "cpu")).startswith("cuda")
    ]
    return max(shares, default=0.0)


def _local_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def describe_extractors(
    config: ExtractConfig, specs: list[tuple[str, dict[str, Any]]] | None = None
) -> tuple[list[ExtractorRecord], float]:
    """The store records and per-actor GPU share of the config's extractors.

    Building an extractor loads its models onto its device, so a config on ``cuda`` cannot be
    built where the driver runs on a machine without a GPU (a cluster's CPU-only head): there
    the extractors are built once in a Ray task that reserves the same GPU share, on a node
    that has one (an autoscaling cluster starts one), and only their descriptions come back.
    """
    records, gpus, _ = _describe(config, extractor_specs(config) if specs is None else specs)
    return records, gpus


def _describe(
    config: ExtractConfig, specs: list[tuple[str, dict[str, Any]]]
) -> tuple[list[ExtractorRecord], float, dict[str, Extractor] | None]:
    """:func:`describe_extractors`, plus the extractors themselves where they were built in
    this process (None where a GPU node built them)."""
    video = config.video.model_dump()
    share = _requests_gpu(specs)
    if share <= 0 or _local_cuda():
        built = build_extractors(specs, video)
        records = [_record(e) for e in built.values()]
        return records, gpus_per_actor(list(built.values())), built
    log.info("describing the extractors on a GPU node (this machine has no CUDA device)")
    with ray_session(config.ray):
        task = ray.remote(num_cpus=1, num_gpus=share)(build_records)
        records, gpus = ray.get(task.remote(specs, video))
    return records, gpus, None


def runs_in_process(config: ExtractConfig, media: int) -> bool:
    """Whether a job computing ``media`` media runs in this process instead of on Ray: at most
    ``local_max_media`` of them, no fixed pool (``workers``) or decode tasks
    (``decode_tasks``), and no Ray to use (none running here, no cluster named by
    ``ray.address`` or ``RAY_ADDRESS``)."""
    return (
        0 < media <= config.local_max_media
        and config.workers is None
        and config.decode_tasks == 0
        and not config.ray.address
        and not os.environ.get("RAY_ADDRESS")
        and not ray.is_initialized()
    )


@dataclass
class ResultBuffer:
    """Results of a batch of media, held until the batch is written in one go."""

    results: list[MediaResult] = field(default_factory=list)

    def write_results(self, results: Sequence[MediaResult]) -> None:
        """Keep one media's results."""
        self.results.extend(results)


def extract_batch(
    extractors: dict[str, Extractor],
    store: FeatureStore,
    video: dict[str, Any],
    digest: str,
    batch: dict[str, Any],
    node: str,
) -> dict[str, list[Any]]:
    """Process a batch of planned media (``media_id``, ``path``, ``todo``: comma-separated
    extractor names, and optionally ``prefetched``: pickled decodes of
    :func:`prefetch_batch`) and write their results to the store together: a few files per
    extractor version, not a few per media. A crash loses this batch only; the re-run
    computes it again. Returns one outcome per (media, extractor): media_id, extractor,
    status, error and ``node`` (where it ran)."""
    out: dict[str, list[Any]] = {
        "media_id": [],
        "extractor": [],
        "status": [],
        "error": [],
        "node": [],
    }
    ahead = batch.get("prefetched", [None] * len(batch["media_id"]))
    written = ResultBuffer()
    for media_id, path, todo, packed in zip(
        batch["media_id"], batch["path"], batch["todo"], ahead, strict=True
    ):
        # Bytes packed by prefetch_batch of this same job and handed over through Ray's
        # object store; never read from a file.
        prefetched = pickle.loads(packed) if packed is not None else None
        media = MediaContext(str(media_id), str(path), prefetched=prefetched, **video)
        chosen = [extractors[name] for name in str(todo).split(",")]
        source = fingerprint(str(path), digest)
        for outcome in process_media(media, chosen, written, source):
            out["media_id"].append(outcome.media_id)
            out["extractor"].append(outcome.extractor)
            out["status"].append(outcome.status)
            out["error"].append(outcome.error or "")
            out["node"].append(node)
    store.write_results(written.results)
    return out


class ExtractionActor:
    """A Ray Data actor: builds the extractors once, then processes batches of media
    (:func:`extract_batch`)."""

    def __init__(
        self,
        specs: list[tuple[str, dict[str, Any]]],
        store_uri: str,
        video: dict[str, Any],
        digest: str = "quick",
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        # Torch threads follow the CPUs this actor holds: its default of one thread per core
        # would oversubscribe them. Decoding runs beside it in the actor's decoder child.
        torch.set_num_threads(
            max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
        )
        self.extractors = build_extractors(specs, video)
        self.store = FeatureStore(store_uri)
        self.video = video
        self.digest = digest
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        return extract_batch(self.extractors, self.store, self.video, self.digest, batch, self.node)


def prefetch_batch(
    batch: dict[str, np.ndarray], video: dict[str, Any], max_frames: int, visual: list[str]
) -> dict[str, Any]:
    """Ray Data task: probe each media and decode short visual ones ahead of the actors."""
    packed = []
    for path, todo in zip(batch["path"], batch["todo"], strict=True):
        needs_frames = any(name in visual for name in str(todo).split(","))
        try:
            # A media on object storage is read from a local copy, removed right after.
            with local_copy(str(path)) as local:
                ahead = prefetch(
                    local,
                    video["fps"],
                    video["max_side"],
                    video["max_frames"],
                    video["window_frames"],
                    video["decode_timeout_s"],
                    max_frames,
                    decode=needs_frames,
                )
        except MediaError:
            ahead = None  # the actor copies it again and records why it fails
        # In-memory only: these bytes travel from this task to an extraction actor through
        # Ray's object store (which pickles anyway) and are never written to or read from a
        # store or run folder.
        packed.append(pickle.dumps(ahead, protocol=5))
    return {**batch, "prefetched": packed}


#: Start of the error of a row that failed because of its manifest row.
MANIFEST_FAILURE = "manifest "


def _record_manifest_issues(
    store: FeatureStore, issues: list, extractors: list[ExtractorRecord], manifest_path: str
) -> int:
    """Rows the manifest rejected become failed rows (ids that are not duplicates), except
    where the store already holds a good result for that media and extractor version: a
    manifest problem (a moved file, a label typo) never replaces a good result. Those are
    reported and keep their result until the row is fixed or removed. Returns how many media
    kept results that way."""
    named = [i for i in issues if i.media_id and i.media_id != "nan"]
    named = [i for i in named if "duplicate" not in i.message]
    if not named:
        return 0
    good = {e.name: store.done_media(e.name, e.version, lambda error: True) for e in extractors}
    seen: set[str] = set()
    kept: set[str] = set()
    failed = []
    for issue in named:
        if issue.media_id in seen:
            continue
        seen.add(issue.media_id)
        where = f"{MANIFEST_FAILURE}'{manifest_path}' row {issue.row}"
        for extractor in extractors:
            if issue.media_id in good[extractor.name]:
                kept.add(issue.media_id)
                continue
            row = {"status": STATUS_FAILED, "error": f"{where}: {issue.message}"}
            failed.append(MediaResult(extractor.name, extractor.version, issue.media_id, row))
        if issue.media_id in kept:
            log.warning(
                "%s: %s; its stored results are kept (fix the row, or remove the media from "
                "the store explicitly)",
                where,
                issue.message,
            )
    store.write_results(failed)
    return len(kept)


def plan_extract(config: ExtractConfig, records: Sequence[ExtractorRecord] | None = None) -> Plan:
    """What ``raypipe extract`` with ``config`` would compute, per extractor; writes nothing.
    ``records`` describe the config's extractors, when the caller has them already."""
    if config.manifest is None or config.out is None:
        raise ConfigError("store plan needs both a manifest (--manifest) and a store (--out).")
    manifest, _ = load_manifest(config.manifest, LABEL_SPACES.get(config.labels))
    if records is None:
        records, _ = describe_extractors(config)
    store = FeatureStore(config.out)
    if store.is_store():
        store.require()

    versions = [(r.name, r.version) for r in records]
    return plan_work(store, manifest, versions, _retry_rule(config.retry_failed))


def _retry_rule(retry_failed: bool) -> Callable[[str], bool]:
    """Which failed rows a job computes again: all when asked (``retry_failed``), else those
    that failed because of their manifest row (valid now that it is in the manifest)."""
    return lambda error: retry_failed or error.startswith(MANIFEST_FAILURE)


def prepare_job(
    store: FeatureStore,
    manifest: pd.DataFrame,
    issues: list,
    records: list[ExtractorRecord],
    manifest_path: str,
    retry_failed: bool,
) -> tuple[Plan, int]:
    """Everything ``raypipe extract`` does before its first media: record the manifest rows
    and extractor versions, record manifest problems (never over a good result), and plan the
    work from the index. Returns the plan and how many media kept results despite a manifest
    problem."""
    # Ids the store already knows keep their manifest row (path, label, split) while their
    # new row is rejected: only ids new to the store are added with a null path.
    rejected = [i for i in issues if i.media_id and "duplicate" not in i.message]
    if rejected:
        known = set(manifest["media_id"]) | set(store.read_manifest()["media_id"])
        rejected = [i for i in rejected if i.media_id not in known]
    issue_rows = pd.DataFrame(
        {"media_id": list(dict.fromkeys(i.media_id for i in rejected)), "path": None}
    )
    store.write_manifest(pd.concat([manifest, issue_rows], ignore_index=True))
    store.register_extractors(records)
    kept = _record_manifest_issues(store, issues, records, manifest_path)
    versions = [(r.name, r.version) for r in records]
    return plan_work(store, manifest, versions, _retry_rule(retry_failed)), kept


def run_extract(config: ExtractConfig) -> ExtractSummary:
    """Extract every enabled extractor's features for the manifest into the store.

    Work already in the store for the current extractor versions and unchanged files is
    skipped; new, changed or (on request) failed (media, extractor) pairs are computed. Returns
    counts; per-media outcomes are in the store.
    """
    if config.manifest is None or config.out is None:
        raise ConfigError("extract needs both a manifest (--manifest) and a store (--out).")
    manifest, issues = load_manifest(config.manifest, LABEL_SPACES.get(config.labels))
    specs = extractor_specs(config)
    extractors, gpus, built = _describe(config, specs)
    store = FeatureStore(config.out)
    store.initialise()
    job = provenance("extract", config)
    job_name = store.write_job_record(job)
    plan, kept = prepare_job(
        store,
        manifest,
        issues,
        extractors,
        str(config.manifest),
        config.retry_failed,
    )
    items = plan.items
    for part in plan.extractors:
        if part.reasons.get("changed"):
            log.info(
                "%s: %d media changed on disk since their results were written; recomputing "
                "them (their old rows are superseded)",
                part.name,
                part.reasons["changed"],
            )
    summary = ExtractSummary(
        store=config.out,
        media=len(manifest),
        skipped=plan.skipped,
        manifest_issues=len(issues),
        kept_despite_manifest=kept,
    )
    if not items:
        log.info("nothing to compute: every (media, extractor) is up to date")
        _end(store, config, extractors)
        store.write_job_record(_finished(job, summary), job_name)
        return summary

    if built is not None and runs_in_process(config, len(items)):
        _extract_here(config, store, built, items, summary)
        _end(store, config, extractors)
        store.write_job_record(_finished(job, summary), job_name)
        return summary
    built = None  # the actors load their own models; the driver's copies are not kept

    with ray_session(config.ray):
        reach = cluster_reach()
        pool = job_pool(config, len(items), gpus, reach)
        warning = oversubscription(
            pool,
            config.cpus_per_worker,
            gpus,
            config.decode_tasks,
            reach or ray.cluster_resources(),
            known_reach=reach is not None,
        )
        if warning:
            log.warning("%s", warning)
        log.info(
            "extracting %d media with %s: %s",
            len(items),
            pool.describe(),
            ", ".join(f"{e.name}@{e.version}" for e in extractors),
        )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        if config.decode_tasks:
            dataset = dataset.map_batches(
                prefetch_batch,
                fn_kwargs={
                    "video": config.video.model_dump(),
                    "max_frames": config.prefetch_max_frames,
                    "visual": [e.name for e in extractors if e.modality == "visual"],
                },
                batch_size=1,
                num_cpus=1,
                compute=ray.data.TaskPoolStrategy(size=config.decode_tasks),
            )
        results = dataset.map_batches(
            ExtractionActor,
            fn_constructor_kwargs={
                "specs": specs,
                "store_uri": config.out,
                "video": config.video.model_dump(),
                "digest": config.fingerprint,
            },
            batch_size=config.batch_size,
            # Ray Data grows the pool while its actors are busy and the cluster has room
            # (asking the autoscaler for nodes when short) and shrinks it when they idle.
            compute=ray.data.ActorPoolStrategy(min_size=pool.min, max_size=pool.max),
            num_cpus=config.cpus_per_worker,
            num_gpus=gpus,
        )
        with progress_bar("extract", total=len(items) * len(extractors)) as advance:
            for row in results.iter_rows():
                summary.computed[row["status"]] += 1
                summary.nodes[row["node"]] += 1
                if row["status"] == STATUS_FAILED:
                    log.warning(
                        "%s [%s] failed: %s", row["media_id"], row["extractor"], row["error"]
                    )
                advance(1)
    _end(store, config, extractors)
    store.write_job_record(_finished(job, summary), job_name)
    return summary


def _extract_here(
    config: ExtractConfig,
    store: FeatureStore,
    built: dict[str, Extractor],
    items: list[dict[str, Any]],
    summary: ExtractSummary,
) -> None:
    """A small job in this process (:func:`runs_in_process`): the extractors built to describe
    them process the media ``batch_size`` at a time, as an actor would, with no Ray started."""
    log.info(
        "extracting %d media in this process (at most local_max_media=%d; Ray is not started): %s",
        len(items),
        config.local_max_media,
        ", ".join(f"{e.name}@{e.version}" for e in built.values()),
    )
    video = config.video.model_dump()
    with (
        progress_bar("extract", total=len(items) * len(built)) as advance,
        _decoder_closed(config.video.decode_timeout_s),
    ):
        for start in range(0, len(items), config.batch_size):
            part = items[start : start + config.batch_size]
            batch = {key: [item[key] for item in part] for key in ("media_id", "path", "todo")}
            out = extract_batch(built, store, video, config.fingerprint, batch, "local")
            for status, media_id, name, error in zip(
                out["status"], out["media_id"], out["extractor"], out["error"], strict=True
            ):
                summary.computed[status] += 1
                summary.nodes["local"] += 1
                if status == STATUS_FAILED:
                    log.warning("%s [%s] failed: %s", media_id, name, error)
                advance(1)


@contextlib.contextmanager
def _decoder_closed(timeout_s: float) -> Iterator[None]:
    """Stop this process's decoder child when the block ends: an actor keeps its child for
    the next batch, while a job run here must not leave one behind in the caller's process
    (a notebook, a script that goes on)."""
    try:
        yield
    finally:
        shared_decoder(timeout_s).close()


def _end(store: FeatureStore, config: ExtractConfig, extractors: list[ExtractorRecord]) -> None:
    """Fold the index and small files of the versions this job wrote (``compact``)."""
    if config.compact:
        compact(store, [(e.name, e.version) for e in extractors])


def _finished(job: dict[str, Any], summary: ExtractSummary) -> dict[str, Any]:
    """A job's record once it ended: its summary (counts) and end time added."""
    from datetime import datetime, timezone

    return {
        **job,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "summary": {
            "media": summary.media,
            "computed": dict(summary.computed),
            "skipped": summary.skipped,
            "manifest_issues": summary.manifest_issues,
        },
    }
