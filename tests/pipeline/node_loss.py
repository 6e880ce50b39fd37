"""raypipe jobs on a multi-node Ray cluster that loses a worker node while they work.

Run as a script by tests/pipeline/test_node_loss.py, in a process session of its own:

    python tests/pipeline/node_loss.py MANIFEST WORK_DIR TEMP_DIR [SCENARIO ...]

SCENARIOs (default: all, in this order): ``extract`` (openSMILE over MANIFEST into
WORK_DIR/extract/store with the autoscaling actor pool), ``tune`` (a classifier search over a
synthetic store, run folder WORK_DIR/tune/run) and ``train`` (Ray Train fine-tuning with two
workers on generated faces, run folder WORK_DIR/train/run).

One cluster (``ray.cluster_utils.Cluster``, every node a set of processes on this machine):
a head of 1 CPU, which runs the driver, and two worker nodes of 1 CPU, each node with an 80 MB
object store. During each job a watcher thread removes one worker node (raylet, object store
and workers killed at once, as when a machine goes away) as soon as the job demonstrably works
there: an extraction batch finished on it and an extraction actor is alive on it; a trial
actor that has reported epochs runs on it while at least three trials are unfinished (so it
runs one), after two finished; a training worker runs on it after an epoch's checkpoint was
registered. Ray's state API (tasks and actors by node) tells where work runs. A job that
then ends short (an exception, or trials that did not finish) is run again with the same
config, as a user re-runs the same command. Before the next scenario a fresh worker node
replaces the one removed.

WORK_DIR/<scenario>.json receives each scenario's record as it ends: the node removed and why,
the attempts, and the figures (media, trials or epochs; lost; duplicated; run twice), which
are read back from what the job wrote: the store through ``FeatureStore`` and as plain
Parquet, the run folder's trials.parquet and ledger, the training history and the epochs the
workers started. The figures also go to the log as the rows of docs/reliability.md's table,
with each job's seconds and the load average. Ray keeps its sessions
in TEMP_DIR (``RAY_TMPDIR``: a short path outside the machine's shared /tmp/ray, so no other
Ray is touched); whoever starts this script ends what is left of the cluster by ending its
process session (``tests.process_session.end_session``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("node_loss")

#: Object store of every node, bytes.
OBJECT_STORE = 80 * 1024 * 1024
#: Worker nodes besides the head.
WORKER_NODES = 2
#: Seconds the watcher waits for its condition before giving up (the job then runs whole, and
#: its record says no node was removed).
WATCH_LIMIT_S = 300.0
#: Runs of one job at most (the first and the re-runs after it ended short).
ATTEMPTS = 3

#: The victim condition: given the ids of the live worker nodes, a node to remove and why.
Victim = Callable[[set[str]], "tuple[str, str] | None"]


def start_cluster() -> Any:
    """A head of 1 CPU and ``WORKER_NODES`` worker nodes of 1 CPU; connected to."""
    import ray
    from ray.cluster_utils import Cluster

    # The dashboard serves Ray's state API, which the watcher reads (tasks and actors by node).
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": OBJECT_STORE,
            "include_dashboard": True,
            "dashboard_port": 0,
        },
    )
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    return cluster


def refill(cluster: Any) -> None:
    """Add worker nodes until there are ``WORKER_NODES``, and wait until Ray counts them."""
    while len(cluster.worker_nodes) < WORKER_NODES:
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    cluster.wait_for_nodes()


class NodeKiller(threading.Thread):
    """Polls ``victim`` every ``poll_s`` seconds; once it names a worker node, removes that
    node from ``cluster`` at once (no graceful shutdown)."""

    def __init__(self, cluster: Any, victim: Victim, poll_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.victim = victim
        self.poll_s = poll_s
        self.removed: dict[str, Any] | None = None
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        workers = {node.node_id: node for node in self.cluster.worker_nodes}
        deadline = time.time() + WATCH_LIMIT_S
        try:
            while not self.stop.is_set() and time.time() < deadline:
                found = self.victim(set(workers))
                if found is not None:
                    node_id, why = found
                    at = time.time()
                    self.cluster.remove_node(workers[node_id], allow_graceful=False)
                    self.removed = {"node": node_id, "why": why, "at": at}
                    log.warning("removed worker node %s: %s", node_id[:8], why)
                    return
                self.stop.wait(self.poll_s)
        except Exception:  # the record says why no node was removed
            self.error = traceback.format_exc()


def tasks(name_part: str, nodes: set[str]) -> Counter:
    """Finished tasks whose name contains ``name_part``, by node (of ``nodes``). Ray records
    task states about once a second."""
    from ray.util.state import list_tasks

    counts: Counter = Counter()
    for task in list_tasks(
        filters=[("state", "=", "FINISHED")], limit=10_000, raise_on_missing_output=False
    ):
        if name_part in task.name and task.node_id in nodes:
            counts[task.node_id] += 1
    return counts


def alive_actors(class_part: str, nodes: set[str]) -> Counter:
    """Alive actors whose class name contains ``class_part``, by node (of ``nodes``)."""
    from ray.util.state import list_actors

    counts: Counter = Counter()
    for actor in list_actors(
        filters=[("state", "=", "ALIVE")], limit=10_000, raise_on_missing_output=False
    ):
        if class_part in actor.class_name and actor.node_id in nodes:
            counts[actor.node_id] += 1
    return counts


@dataclass
class Scenario:
    """One job: ``run`` does what the command does and says what it left undone (None: all
    done); ``victim`` picks the node to remove; ``figures`` reads back what the job wrote."""

    name: str
    unit: str
    run: Callable[[], str | None]
    victim: Victim
    figures: Callable[[], dict[str, Any]]
    notes: dict[str, Any] = field(default_factory=dict)


# --- extract ----------------------------------------------------------------------------------

#: Media extracted (of the demo set).
EXTRACT_MEDIA = 20
#: One media per batch, and openSMILE functionals over 0.5 s windows every 20 ms (2 to 3 s per
#: 2 s clip on one core here), so that every node works for a while.
EXTRACT_WORK = ["batch_size=1", "opensmile.window_s=0.5", "opensmile.hop_s=0.02"]
#: Ray Data names the actor class of ``map_batches(ExtractionActor)`` after the operator, and
#: its tasks after the class.
EXTRACT_ACTOR = "MapWorker(MapBatches(ExtractionActor))"


def extract(manifest: str, work: Path) -> Scenario:
    """``raypipe extract`` (openSMILE only; the autoscaling actor pool) losing a node on which
    an extraction batch finished and an extraction actor is alive."""
    import pandas as pd

    from raypipe.config import ExtractConfig
    from raypipe.config.base import load_config
    from raypipe.extractors.registry import EXTRACTORS
    from raypipe.pipeline.extract import run_extract
    from raypipe.store.compaction import collect_garbage
    from raypipe.store.feature_store import FeatureStore
    from raypipe.store.verify import verify

    # Twenty media of the demo set, the three broken files among them, paths made absolute.
    rows = pd.read_csv(manifest)
    broken = rows["media_id"].str.startswith("broken")
    rows = pd.concat([rows[~broken].head(EXTRACT_MEDIA - int(broken.sum())), rows[broken]])
    rows["path"] = [str((Path(manifest).parent / p).resolve()) for p in rows["path"]]
    manifest = str(work / "manifest.csv")
    rows.to_csv(manifest, index=False)
    media = len(rows)
    store = work / "store"
    others = [
        f"{name}.enabled=false"
        for name in EXTRACTORS
        if name != "opensmile" and name in ExtractConfig.model_fields
    ]
    config = load_config(
        ExtractConfig, None, [*others, *EXTRACT_WORK], {"manifest": manifest, "out": str(store)}
    )
    scenario: Scenario

    def run() -> str | None:
        summary = run_extract(config)
        scenario.notes.setdefault("summaries", []).append(
            {"computed": dict(summary.computed), "skipped": summary.skipped}
        )
        return None

    def victim(workers: set[str]) -> tuple[str, str] | None:
        done = tasks(EXTRACT_ACTOR, workers)
        actors = alive_actors(EXTRACT_ACTOR, workers)
        ready = [node for node in done if actors[node]]
        if not ready:
            return None
        node = max(ready, key=lambda n: done[n])
        return node, f"{done[node]} batch(es) finished there and an extraction actor is alive"

    def figures() -> dict[str, Any]:
        features = FeatureStore(str(store))
        rows = features.status(problems_only=False)
        plain = pd.read_parquet(store / "media")
        spans = pd.read_parquet(store / "frames")
        return {
            "total": media,
            "lost": media - rows["media_id"].nunique(),
            "not_done": int((~rows["status"].isin(["ok", "failed"])).sum()),
            "duplicated": int(rows["media_id"].duplicated().sum()),
            "lost_plain": media - plain["media_id"].nunique(),
            "duplicated_plain": int(plain["media_id"].duplicated().sum()),
            "duplicated_spans_plain": int(spans.duplicated(["media_id", "frame_index"]).sum()),
            # Data files no index names (a write cut short): plain reads would see their rows.
            "unindexed_files": collect_garbage(features, min_age_s=0, dry_run=True).files_removed,
            "verify_ok": verify(features).ok,
            # Batches run again (in flight on the node, or their results held there) are not
            # counted: Ray's records of the lost node's last tasks go with it.
            "run_twice": None,
        }

    scenario = Scenario("extract", "media", run, victim, figures)
    return scenario


# --- tune-classifiers -------------------------------------------------------------------------

#: 8 torch trials (2 poolings x 2 sizes x 2 learning rates) of 60 epochs, a few seconds each
#: (tests/classify/test_resume_after_kill.py's search, longer trials), one CPU each: three
#: run at once, one per node.
SEARCH = {
    "feature_sets": [{"extractor": "face_sim", "pooling": ["mean", "pct"]}],
    "classifiers": ["mlp"],
    "param_grid": {"mlp": {"hidden": [16, 32], "lr": [0.01, 0.003], "batch_size": [4]}},
    "max_epochs": 60,
    "early_stopping": "none",
}
TRIALS = 8


def ledger(run: Path) -> dict[str, dict[str, Any]]:
    """The search's finished trials by key (its ledger), empty before the first."""
    from raypipe.pipeline.trial_ledger import TrialLedger

    folders = list((run / "tune").glob("classifiers-*"))
    return TrialLedger(folders[0] / "finished").done() if folders else {}


def tune(_: str, work: Path) -> Scenario:
    """``raypipe tune-classifiers`` losing a node on which a trial is running and has reported
    epochs, after two trials finished."""
    import yaml

    from raypipe.config import TuneClassifiersConfig
    from raypipe.config.base import load_config
    from raypipe.pipeline.tune_classifiers import run_tune_classifiers
    from raypipe.store.run_folder import RunFolder
    from tests.classify.synthetic import make_store

    store, _ = make_store(work / "store")
    config_file = work / "search.yaml"
    config_file.write_text(yaml.safe_dump(SEARCH))
    run_folder = work / "run"
    config = load_config(
        TuneClassifiersConfig, config_file, [], {"store": store.uri, "run": run_folder}
    )
    scenario: Scenario

    def run() -> str | None:
        run_tune_classifiers(config)
        # Finished trials by key with their start times, after each attempt.
        finished = {key: e["metrics"]["started_at"] for key, e in ledger(run_folder).items()}
        scenario.notes.setdefault("ledgers", []).append(finished)
        missing = TRIALS - len(RunFolder(run_folder).trials())
        # What the search logs then: "N trial(s) did not finish ...; re-run to go on".
        return f"{missing} trial(s) did not finish" if missing else None

    def victim(workers: set[str]) -> tuple[str, str] | None:
        # While at least three trials are unfinished, every trial actor is running a trial
        # (or being reset for the next one): removing its node fails that trial.
        done = len(ledger(run_folder))
        if not 2 <= done <= TRIALS - 3:
            return None
        running = alive_actors("ImplicitFunc", workers)
        # A function trial's actor runs one "train" task per report (an epoch here).
        reported = tasks("_trial.train", workers)
        ready = [node for node in running if reported[node]]
        if not ready:
            return None
        node = ready[0]
        return node, (
            f"{done} trial(s) finished; a trial actor runs there ({reported[node]} epoch reports)"
        )

    def figures() -> dict[str, Any]:
        trials = RunFolder(run_folder).trials().set_index("trial_id")
        first = scenario.notes["ledgers"][0]
        # A trial the first attempt finished is kept: not trained again (same start time).
        kept = [
            k for k, t in first.items() if k in trials.index and trials.at[k, "started_at"] == t
        ]
        predictions = list((run_folder / "trial_predictions").glob("*.parquet"))
        return {
            "total": TRIALS,
            "lost": TRIALS - trials.index.nunique(),
            "duplicated": int(trials.index.duplicated().sum()),
            "finished_first_attempt": len(first),
            "kept_after_rerun": len(kept),
            "predictions_files": len(predictions),
            # Trials started again: the one on the lost node, re-run by the second attempt.
            "run_twice": len(trials) - len(kept),
        }

    scenario = Scenario("tune-classifiers", "trials", run, victim, figures)
    return scenario


# --- train ------------------------------------------------------------------------------------

#: Small images, two Ray Train workers of one CPU each (so on two nodes), 4 epochs of one to
#: three seconds; tests/finetune/test_train_pipeline.py's settings otherwise.
TRAIN = [
    "data.image_size=32",
    "batch_size=16",
    "augment.degrees=5",
    "augment.translate=0.03",
    "augment.scale=0.05",
    "early_stop_patience=0",
    "epochs=4",
    "num_workers=2",
    "cpus_per_worker=1",
    "max_failures=1",
]


def train(_: str, work: Path) -> Scenario:
    """``raypipe train`` losing the node of one of its two workers once an epoch's checkpoint
    is registered."""
    import pandas as pd

    from raypipe.config import TrainConfig
    from raypipe.config.base import load_config
    from raypipe.finetune.sample_faces import write_image_folder
    from raypipe.pipeline.train import run_name, run_train

    images = write_image_folder(
        work / "faces", {"train": 8, "val": 4}, size=32, classes=3, identities=4
    )
    run_folder = work / "run"
    config = load_config(TrainConfig, None, [*TRAIN, f"data.root={images}"], {"run": run_folder})
    total = config.epochs
    # Ray Train's record of the checkpoints it registered, which a restart resumes from.
    snapshot = run_folder.resolve() / "ray" / run_name(config) / "checkpoint_manager_snapshot.json"
    epochs_log = work / "epochs.log"
    scenario: Scenario

    def log_epoch(epoch: int, rank: int) -> None:
        """Runs on each worker as an epoch starts."""
        import ray

        with open(epochs_log, "a") as handle:
            node = ray.get_runtime_context().get_node_id()
            handle.write(f"{epoch} {rank} {node} {time.time()}\n")

    def run() -> str | None:
        summary = run_train(config, epoch_hook=log_epoch)
        missing = total - summary.epochs_done
        return f"{missing} epoch(s) not run" if missing else None

    def victim(workers: set[str]) -> tuple[str, str] | None:
        registered = snapshot.read_text() if snapshot.exists() else ""
        epochs = [int(e) for e in re.findall(r"epoch_(\d{4})", registered)]
        if not epochs:
            return None
        running = alive_actors("RayTrainWorker", workers)
        if not running:
            return None
        scenario.notes["checkpoint_at_loss"] = max(epochs)
        node = next(iter(running))
        return node, f"epoch {max(epochs)}'s checkpoint registered; a training worker runs there"

    def figures() -> dict[str, Any]:
        history = pd.read_csv(run_folder / "report" / "metrics.csv")["epoch"]
        starts = [line.split() for line in epochs_log.read_text().splitlines()]
        rank0 = Counter(int(epoch) for epoch, rank, _, _ in starts if rank == "0")
        again = sorted(epoch for epoch, n in rank0.items() if n > 1)
        return {
            "total": total,
            "lost": total - history.nunique(),
            "duplicated": int(history.duplicated().sum()),
            "history": history.tolist(),
            "checkpoint_at_loss": scenario.notes.get("checkpoint_at_loss"),
            # Epochs rank 0 started twice: those after the checkpoint the restart resumed from.
            "epochs_again": again,
            "run_twice": len(again),
            "epoch_starts": starts,
        }

    scenario = Scenario("train", "epochs", run, victim, figures)
    return scenario


# --- driver -----------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[str, Path], Scenario]] = {
    "extract": extract,
    "tune": tune,
    "train": train,
}


def play(cluster: Any, scenario: Scenario) -> dict[str, Any]:
    """Run ``scenario``'s job (again while it ends short) with a node killer watching."""
    killer = NodeKiller(cluster, scenario.victim)
    started = time.time()
    killer.start()
    attempts: list[dict[str, Any]] = []
    try:
        for _ in range(ATTEMPTS):
            begun = time.time()
            try:
                short = scenario.run()
            except Exception as error:
                short = f"{type(error).__name__}: {error}"[:2000]
            attempts.append({"short": short, "seconds": round(time.time() - begun, 1)})
            if short is None:
                break
            log.warning("%s ended short (%s); running it again", scenario.name, short)
    finally:
        killer.stop.set()
        killer.join()
    figures = scenario.figures() if attempts[-1]["short"] is None else {}
    return {
        "scenario": scenario.name,
        "unit": scenario.unit,
        "removed": killer.removed,
        "watch_error": killer.error,
        "attempts": attempts,
        "figures": figures,
        "seconds": round(time.time() - started, 1),
    }


def table_row(record: dict[str, Any]) -> str:
    """docs/reliability.md's row for one scenario's record."""
    figures = record["figures"]
    runs = len(record["attempts"])
    outcome = "finished" if runs == 1 else f"finished after {runs - 1} re-run(s)"
    again = figures.get("run_twice")
    return (
        f"| {record['scenario']} | {figures.get('total')} {record['unit']} | "
        f"{1 + WORKER_NODES} | {1 if record['removed'] else 0} | {figures.get('lost')} | "
        f"{figures.get('duplicated')} | {'not counted' if again is None else again} | {outcome} | "
        f"{record['seconds']:.0f} s | {record['load'][0]:.0f} |"
    )


def main(manifest: str, work_dir: str, temp_dir: str, *names: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Ray's sessions, sockets and its "current cluster" file in a folder of this run only.
    os.environ["RAY_TMPDIR"] = temp_dir
    # A throwaway cluster that this process starts: no token.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    work = Path(work_dir)
    started = time.time()
    cluster = start_cluster()
    log.info("head started in %.1f s", time.time() - started)
    rows = []
    for name in names or SCENARIOS:
        began = time.time()
        refill(cluster)
        log.info("%d worker node(s) ready in %.1f s", WORKER_NODES, time.time() - began)
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        record = play(cluster, SCENARIOS[name](manifest, folder))
        record.update({"load": os.getloadavg(), "cores": os.cpu_count()})
        (work / f"{name}.json").write_text(json.dumps(record, default=str))
        rows.append(table_row(record))
        log.info("%s: %s", name, json.dumps(record, default=str))
    log.info("table rows:\n%s", "\n".join(rows))
    log.info("all scenarios in %.1f s; load %s", time.time() - started, os.getloadavg())
    import ray

    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
