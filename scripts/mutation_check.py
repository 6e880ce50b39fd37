"""Mutation check: deliberate breakages of the components' hot spots, each run against the unit
tests that should catch it.

For every breakage the checkout's files (tracked, plus untracked files git does not ignore) are
copied into a temporary folder, exactly one source snippet is replaced there (a snippet found
zero or several times stops the check, so the list stays honest when code moves), and the
breakage's tests run in that copy (``python3 -m pytest -q -x -p no:cacheprovider -n 0``, unit
tests only, with ``PYTHONPATH`` set to the copy). A breakage is *caught* when a test fails and
*survives* when every test passes. The same test files first run on an unbroken copy (one pytest
per file) and must pass.

    python3 scripts/mutation_check.py                      # all breakages, a Markdown table
    python3 scripts/mutation_check.py --only ccc-sign      # one (repeatable)
    python3 scripts/mutation_check.py --list               # names, files and tests
    python3 scripts/mutation_check.py --jobs 2             # two breakages at a time

Exit status: 0 when every breakage is caught, 1 when one survives, 2 when the check itself
cannot run (a snippet not found once, the unbroken tests failing, pytest not finishing).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("mutation_check")

REPO = Path(__file__).resolve().parent.parent
#: pytest's exit status when tests ran and at least one failed.
PYTEST_TESTS_FAILED = 1


class MutationCheckError(RuntimeError):
    """The check cannot give an answer (not a surviving breakage)."""


@dataclass(frozen=True)
class Mutation:
    """One deliberate breakage.

    Attributes:
        name: short identifier (``--only`` takes it).
        what: what the breakage does, in words (for the table).
        path: file to break, relative to the repository root.
        snippet: exact source text to replace; must occur exactly once in ``path``.
        replacement: text put in its place.
        tests: test files (or node ids) that should catch it, relative to the root.
    """

    name: str
    what: str
    path: str
    snippet: str
    replacement: str
    tests: tuple[str, ...]


#: The unit tests each breakage runs: whole files where they are quick, the relevant tests of
#: files that also train models or run detectors on video (pytest node ids).
CASCADE_NET_TESTS = (
    "tests/models/test_model_families.py::test_cascade_combination_on_a_hand_computed_case",
    "tests/models/test_model_families.py::test_cascade_shares_a_group_probability_among_its_classes",
)
MULTITASK_TESTS = (
    "tests/models/test_model_families.py::test_multitask_masked_losses_then_student_distillation",
)
MTCNN_TESTS = (
    "tests/faces/test_mtcnn.py::test_astronaut_one_face_with_plausible_landmarks",
    "tests/faces/test_mtcnn.py::test_batch_matches_single_frames_and_mirror",
    "tests/faces/test_mtcnn.py::test_port_matches_the_original_mtcnn",
)
ALIGN_TESTS = (
    "tests/faces/test_align_track.py::test_similarity_transform_recovers_a_known_similarity",
    "tests/faces/test_align_track.py::test_aligned_crop_puts_landmarks_on_the_template",
    "tests/faces/test_align_track.py::test_each_landmark_lands_on_its_own_template_point",
    "tests/faces/test_align_track.py::test_alignment_undoes_in_plane_rotation_of_a_real_face",
)
FER_TESTS = (
    "tests/extractors/test_fer_cnn.py::test_port_matches_numpy_reference",
    "tests/extractors/test_fer_cnn.py::test_load_fer_model_forward_equals_reference",
    "tests/extractors/test_fer_cnn.py::test_preprocess_shapes_range_and_luma",
    "tests/extractors/test_fer_cnn.py::test_real_face_is_happy",
)

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "hog-zeros",
        "HOG extractor returns all-zero vectors",
        "raypipe/extractors/visual/handcrafted.py",
        "        return hog(\n",
        "        return 0.0 * hog(\n",
        ("tests/extractors/test_handcrafted_reference.py",),
    ),
    Mutation(
        "lbp-zeros",
        "LBP extractor returns all-zero vectors",
        "raypipe/extractors/visual/handcrafted.py",
        "        return np.concatenate(histograms)\n",
        "        return 0.0 * np.concatenate(histograms)\n",
        ("tests/extractors/test_handcrafted_reference.py",),
    ),
    Mutation(
        "cascade-net-fine-reversed",
        "cascade network combination reads the fine model's classes in reverse order",
        "raypipe/models/cascade_net.py",
        "out[:, indices] = coarse_probs[:, g : g + 1] * fine_probs\n",
        "out[:, indices] = coarse_probs[:, g : g + 1] * fine_probs.flip(1)\n",
        CASCADE_NET_TESTS,
    ),
    Mutation(
        "cascade-fusion-fine-reversed",
        "cascade fusion method reads the fine model's classes in reverse order",
        "raypipe/fusion/methods/cascade.py",
        "        share = fine / fine_mass[:, groups]\n",
        "        share = fine[:, ::-1] / fine_mass[:, groups]\n",
        ("tests/fusion/test_cascade_smoothing.py",),
    ),
    Mutation(
        "weighted-fusion-equal-weights",
        "weighted fusion ignores its weights (every model weighted equally)",
        "raypipe/fusion/rules.py",
        "    weights = np.asarray(weights, dtype=np.float64)\n    if weights.ndim == 1:\n",
        "    weights = np.ones_like(np.asarray(weights, dtype=np.float64))\n"
        "    if weights.ndim == 1:\n",
        ("tests/fusion/test_pooling_fusion_metrics.py",),
    ),
    Mutation(
        "expression-f1-is-accuracy",
        "ABAW expression macro-F1 computed as accuracy",
        "raypipe/metrics.py",
        '    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))\n',
        "    return float(np.mean(y_true == y_pred))\n",
        ("tests/test_metrics.py",),
    ),
    Mutation(
        "classification-f1-is-accuracy",
        "classification scores' macro_f1 computed as accuracy",
        "raypipe/metrics.py",
        'f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)',
        "np.mean(y_true == y_pred)",
        ("tests/fusion/test_pooling_fusion_metrics.py",),
    ),
    Mutation(
        "ccc-sign",
        "CCC loses its sign (absolute covariance)",
        "raypipe/metrics.py",
        "return float(2 * covariance / denominator)",
        "return float(2 * abs(covariance) / denominator)",
        ("tests/test_metrics.py",),
    ),
    Mutation(
        "ccc-denominator",
        "CCC denominator without the squared mean difference (a shifted prediction scores 1)",
        "raypipe/metrics.py",
        "denominator = y_true.var() + y_pred.var() + (mean_t - mean_p) ** 2\n",
        "denominator = y_true.var() + y_pred.var()\n",
        ("tests/test_metrics.py",),
    ),
    Mutation(
        "smoothing-window-off-by-one",
        "frame smoothing window one frame short (its last frame left out)",
        "raypipe/fusion/frame_smoothing.py",
        'hi = np.searchsorted(t, t + window_s / 2 + 1e-9, side="right")\n',
        'hi = np.searchsorted(t, t + window_s / 2 + 1e-9, side="right") - 1\n',
        ("tests/fusion/test_frame_smoothing.py",),
    ),
    Mutation(
        "mtcnn-rnet-nms",
        "MTCNN NMS threshold after RNet 0.7 -> 0.3",
        "raypipe/faces/mtcnn.py",
        "_NMS_RNET = 0.7\n",
        "_NMS_RNET = 0.3\n",
        MTCNN_TESTS,
    ),
    Mutation(
        "mtcnn-regression-sign",
        "MTCNN box regression applied with the wrong sign",
        "raypipe/faces/mtcnn.py",
        "    return boxes[:, :4] + offsets * scale\n",
        "    return boxes[:, :4] - offsets * scale\n",
        MTCNN_TESTS,
    ),
    Mutation(
        "pooling-meanstd-swapped",
        "'meanstd' pooling returns std then mean",
        "raypipe/classify/pooling.py",
        "    return np.concatenate([vectors.mean(axis=0), vectors.std(axis=0)])\n",
        "    return np.concatenate([vectors.std(axis=0), vectors.mean(axis=0)])\n",
        ("tests/fusion/test_pooling_fusion_metrics.py", "tests/classify/test_pooling_encoding.py"),
    ),
    Mutation(
        "fer-bgr",
        "FER CNN input read as BGR instead of RGB",
        "raypipe/extractors/visual/fer_cnn.py",
        "        rgb = torch.from_numpy(batch.astype(np.float32))\n",
        "        rgb = torch.from_numpy(batch[..., ::-1].astype(np.float32))\n",
        FER_TESTS,
    ),
    Mutation(
        "fer-no-normalisation",
        "FER CNN input left in [0, 1] (not mapped to [-1, 1])",
        "raypipe/extractors/visual/fer_cnn.py",
        "        out.append((grey - 0.5) * 2.0)\n",
        "        out.append(grey)\n",
        FER_TESTS,
    ),
    Mutation(
        "multitask-expression-unmasked",
        "multitask loss ignores the expression label mask",
        "raypipe/models/multitask.py",
        "    expression = _masked_mean(expression, targets.expression_mask)\n",
        "    expression = expression.mean()\n",
        MULTITASK_TESTS,
    ),
    Mutation(
        "align-eyes-swapped",
        "alignment template with the left and right eye swapped",
        "raypipe/faces/align.py",
        "        [38.2946, 51.6963],\n        [73.5318, 51.5014],\n",
        "        [73.5318, 51.5014],\n        [38.2946, 51.6963],\n",
        ALIGN_TESTS,
    ),
)


@dataclass(frozen=True)
class Outcome:
    """What the tests did with one breakage."""

    mutation: Mutation
    caught: bool
    failed_test: str
    seconds: float


def checkout_files(repo: Path) -> list[str]:
    """Paths (relative to ``repo``) of its tracked files and untracked files git does not
    ignore, i.e. the working tree as the tests see it, without ignored build outputs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({p for p in listed.split("\0") if p and (repo / p).is_file()})


def copy_checkout(repo: Path, dest: Path) -> None:
    """Copy the checkout's files (:func:`checkout_files`) into ``dest``, keeping their folders;
    a file removed from the working tree since it was listed is left out."""
    for rel in checkout_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(repo / rel, target)
        except FileNotFoundError:
            log.warning("%s was removed while being copied; left out of the copy", rel)


def apply_mutation(root: Path, mutation: Mutation) -> None:
    """Replace the mutation's snippet in its file under ``root``.

    Raises:
        MutationCheckError: the snippet is not in the file exactly once.
    """
    path = root / mutation.path
    text = path.read_text()
    count = text.count(mutation.snippet)
    if count != 1:
        raise MutationCheckError(
            f"mutation '{mutation.name}': its snippet occurs {count} times in {mutation.path}, "
            "not once; update the snippet in scripts/mutation_check.py to the current code"
        )
    path.write_text(text.replace(mutation.snippet, mutation.replacement))


def pytest_command(tests: Sequence[str]) -> list[str]:
    """The pytest call: quiet, stop at the first failure, no cache, unit tests only, one
    process (``-n 0`` when pytest-xdist is installed)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    if importlib.util.find_spec("xdist") is not None:
        command += ["-n", "0"]
    return [*command, "-m", "not integration", *tests]


def run_tests(root: Path, tests: Sequence[str], timeout_s: float) -> tuple[int, str]:
    """Run ``tests`` in the copy at ``root``; returns pytest's exit status and its output.

    Raises:
        MutationCheckError: pytest did not finish within ``timeout_s`` seconds.
    """
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            pytest_command(tests),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise MutationCheckError(
            f"pytest on {' '.join(tests)} did not finish within {timeout_s:.0f} s; raise --timeout"
        ) from exc
    return done.returncode, done.stdout + done.stderr


def check_imports_from(root: Path) -> None:
    """Make sure ``import raypipe`` in the copy loads the copy, not the installed checkout.

    Raises:
        MutationCheckError: raypipe is imported from elsewhere.
    """
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    found = subprocess.run(
        [sys.executable, "-c", "import raypipe; print(raypipe.__file__)"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(root.resolve()):
        raise MutationCheckError(
            f"the copy at {root} imports raypipe from {found}; a breakage there would not be "
            "tested (check how raypipe is installed)"
        )


def first_failure(output: str) -> str:
    """The first ``FAILED``/``ERROR`` node id in pytest's short summary ('' when none)."""
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
    return match.group(1) if match else ""


def run_one(repo: Path, mutation: Mutation, timeout_s: float) -> Outcome:
    """Break one hot spot in a fresh copy and run its tests."""
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.name}-") as folder:
        root = Path(folder)
        copy_checkout(repo, root)
        apply_mutation(root, mutation)
        start = time.monotonic()
        status, output = run_tests(root, mutation.tests, timeout_s)
        seconds = time.monotonic() - start
    if status not in (0, PYTEST_TESTS_FAILED):
        raise MutationCheckError(
            f"mutation '{mutation.name}': pytest exited {status} (not a test failure):\n"
            + output[-3000:]
        )
    caught = status == PYTEST_TESTS_FAILED
    return Outcome(mutation, caught, first_failure(output) if caught else "", seconds)


def run_baseline(repo: Path, tests: Sequence[str], timeout_s: float, jobs: int) -> None:
    """Run every test the breakages use on an unbroken copy (one pytest per test file, ``jobs``
    at once); they must pass.

    Raises:
        MutationCheckError: a test fails without any breakage.
    """
    with tempfile.TemporaryDirectory(prefix="mutation-baseline-") as folder:
        root = Path(folder)
        copy_checkout(repo, root)
        check_imports_from(root)
        start = time.monotonic()
        by_file: dict[str, list[str]] = {}
        for test in tests:
            by_file.setdefault(test.split("::")[0], []).append(test)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            runs = list(pool.map(lambda f: (f, *run_tests(root, by_file[f], timeout_s)), by_file))
    for test, status, output in runs:
        if status != 0:
            raise MutationCheckError(
                f"the unbroken {test} does not pass (pytest exited {status}); fix it first:\n"
                + output[-3000:]
            )
    log.info("unbroken: %d tests pass (%.0f s)", len(tests), time.monotonic() - start)


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    """The results as a Markdown table, one row per breakage."""
    lines = [
        "| breakage | file | result | caught by |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        m = o.mutation
        result = "caught" if o.caught else "**survived**"
        by = f"`{o.failed_test}`" if o.caught else ", ".join(f"`{t}`" for t in m.tests)
        lines.append(f"| `{m.name}`: {m.what} | `{m.path}` | {result} | {by} |")
    return "\n".join(lines)


def selected(only: Sequence[str]) -> list[Mutation]:
    """The mutations named in ``only`` (all when empty).

    Raises:
        MutationCheckError: a name is not in :data:`MUTATIONS`.
    """
    names = {m.name for m in MUTATIONS}
    unknown = sorted(set(only) - names)
    if unknown:
        raise MutationCheckError(
            f"unknown mutation(s) {', '.join(unknown)}; --list shows the names"
        )
    return [m for m in MUTATIONS if not only or m.name in only]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; returns the exit status (0 all caught, 1 a survivor, 2 cannot run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run only this breakage")
    parser.add_argument("--list", action="store_true", help="list the breakages and exit")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds one pytest run may take"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="breakages tested at once (each runs one pytest)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        mutations = selected(args.only)
        if args.list:
            for m in mutations:
                log.info("%s: %s (%s) <- %s", m.name, m.what, m.path, " ".join(m.tests))
            return 0
        tests = list(dict.fromkeys(t for m in mutations for t in m.tests))
        jobs = max(1, args.jobs)
        run_baseline(REPO, tests, args.timeout, jobs)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_one, REPO, m, args.timeout) for m in mutations]
            outcomes = []
            for future in futures:
                outcome = future.result()
                verdict = "caught" if outcome.caught else "SURVIVED"
                log.info("%s: %s (%.0f s)", outcome.mutation.name, verdict, outcome.seconds)
                outcomes.append(outcome)
    except MutationCheckError as exc:
        log.error("%s", exc)
        return 2
    print(markdown_table(outcomes))  # the table is the script's output, for docs/testing.md
    survivors = [o.mutation.name for o in outcomes if not o.caught]
    if survivors:
        log.error("%d of %d breakages survived: %s", len(survivors), len(outcomes), survivors)
        return 1
    log.info("all %d breakages caught", len(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
