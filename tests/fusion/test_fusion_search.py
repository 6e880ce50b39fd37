"""Vectorised fusion-weight scoring and search against the reference fusion."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.fusion.methods.weighted import CandidateScorer, WeightSearch, fixed_candidates
from raypipe.fusion.rules import fuse_per_media, ordered_sum, weighted_fusion
from raypipe.metrics import classification_scores
from tests.fusion.synthetic import column_experts, complementary


@pytest.mark.parametrize("rule", ["sum", "product"])
@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("metric", ["macro_f1", "accuracy", "uar"])
def test_scores_equal_the_reference_fusion(rule: str, per_class: bool, metric: str) -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5), (3, 80))
    probs[1, :7] = np.nan  # a missing modality
    probs[:, 7] = np.nan  # a media nobody scored
    labels = rng.integers(0, 4, 80)  # class 4 never occurs: left out of macro averages
    weights = rng.random((300, 3, 5) if per_class else (300, 3))
    weights[:3] = 0.0  # all-zero weights: uniform fusion, predicts class 0
    scores = CandidateScorer(probs, labels, rule, metric).scores(weights, chunk=64)
    expected = [
        classification_scores(labels, weighted_fusion(probs, w, rule).argmax(1), 5)[metric]
        for w in weights
    ]
    np.testing.assert_array_equal(scores, expected)


def test_search_finds_the_complementary_fusion() -> None:
    probs, labels = complementary(seed=1)
    singles = CandidateScorer(probs, labels, "sum", "accuracy").scores(np.eye(3))
    assert singles.max() < 0.6
    fitted = WeightSearch(metric="accuracy", n_random=500, seed=0).fit(probs, labels)
    # Both informative models carry weight, the noise model (almost) none.
    assert fitted.weights[0] > 0.2 and fitted.weights[1] > 0.2
    assert fitted.weights[2] < min(fitted.weights[:2])
    assert np.isclose(fitted.weights.sum(), 1.0)
    test_probs, test_labels = complementary(seed=2)
    assert np.mean(fitted.predict(test_probs).argmax(1) == test_labels) == 1.0


def test_per_class_weights_trust_each_model_on_its_columns() -> None:
    probs, labels = column_experts(seed=0)
    # The sum rule only: the product rule solves this case with one weight per model too
    # (a zero score vetoes a class).
    per_model = WeightSearch(rules=("sum",), metric="accuracy", n_random=2000).fit(probs, labels)
    per_class = WeightSearch(per_class=True, rules=("sum",), metric="accuracy", n_random=2000).fit(
        probs, labels
    )
    assert per_class.weights.shape == (2, 6)
    np.testing.assert_allclose(per_class.weights.sum(axis=0), 1.0)
    test_probs, test_labels = column_experts(seed=1)
    accuracy_model = np.mean(per_model.predict(test_probs).argmax(1) == test_labels)
    accuracy_class = np.mean(per_class.predict(test_probs).argmax(1) == test_labels)
    assert accuracy_class == 1.0 > accuracy_model
    # Model 0 dominates columns 0-2, model 1 columns 3-5.
    assert (per_class.weights[0, :3] > per_class.weights[1, :3]).all()
    assert (per_class.weights[1, 3:] > per_class.weights[0, 3:]).all()


def test_fit_is_never_worse_than_the_best_member_and_counts_what_it_scored() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), (3, 50))
    labels = rng.integers(0, 4, 50)
    search = WeightSearch(n_random=100, sweeps=1, grid=5, rules=("sum",))
    fitted = search.fit(probs, labels)
    scorer = CandidateScorer(probs, labels)
    assert scorer.scores(fitted.weights[None])[0] >= scorer.scores(np.eye(3)).max()
    assert search.last_scored >= 100 + 4


def test_ties_go_to_the_most_confident_then_the_flattest_weights() -> None:
    # Both models are right on every media; model 1 is more confident.
    probs = np.array([[[0.6, 0.4], [0.4, 0.6]], [[0.9, 0.1], [0.1, 0.9]]])
    labels = np.array([0, 1])
    scorer = CandidateScorer(probs, labels, "sum", "accuracy")
    weights = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 2.0]])
    scores = scorer.scores(weights)
    assert (scores == 1.0).all()
    assert scorer.best(scores, weights) == 2  # most confident; [0, 2] is the same fusion
    uniform = np.full((2, 2, 2), 0.5)
    flat = CandidateScorer(uniform, labels, "sum", "accuracy")
    assert flat.best(flat.scores(weights), weights) == 1  # equal likelihood: flattest
    assert fixed_candidates(2, 3, per_class=True).shape == (3, 2, 3)


def test_bad_rule_or_metric_is_one_clear_sentence() -> None:
    probs, labels = complementary(n=12)
    with pytest.raises(ValueError, match="unknown fusion rule 'max'"):
        CandidateScorer(probs, labels, rule="max")
    with pytest.raises(ValueError, match="unknown metric 'f2'"):
        CandidateScorer(probs, labels, metric="f2")


def _reference_scores(probs, labels, weights, rule, metric, n_classes):
    return [
        classification_scores(labels, weighted_fusion(probs, w, rule).argmax(1), n_classes)[metric]
        for w in weights
    ]


@pytest.mark.parametrize("n_models", [1, 5, 10, 14, 17])
@pytest.mark.parametrize("rule", ["sum", "product"])
def test_scores_equal_the_reference_with_missing_members_and_per_class_weights(
    n_models: int, rule: str
) -> None:
    # Several presence patterns (members padded to a multiple of 4 inside the kernel), blocks
    # that do not divide the candidates, and per-model and per-class weights.
    rng = np.random.default_rng(n_models)
    probs = rng.dirichlet(np.ones(7), (n_models, 150))
    probs[0, :20] = np.nan  # the first member misses 20 media
    probs[n_models - 1, 10:40] = np.nan  # the last one 30, overlapping
    labels = rng.integers(0, 7, 150)
    scorer = CandidateScorer(probs, labels, rule, "macro_f1")
    for shape in [(300, n_models), (300, n_models, 7)]:
        weights = rng.random(shape)
        weights[5] = 0.0  # no weight at all: uniform fusion
        if len(shape) == 3:
            weights[6, :, 2] = 0.0  # one class without weight
        expected = _reference_scores(probs, labels, weights, rule, "macro_f1", 7)
        np.testing.assert_array_equal(scorer.scores(weights, chunk=128), expected)


@pytest.mark.parametrize("rule", ["sum", "product"])
@pytest.mark.parametrize("per_class", [False, True])
def test_float32_ties_go_to_the_first_class_as_in_the_reference(rule: str, per_class: bool) -> None:
    # Class 3 equals class 1 on some media and exceeds it by less than float32 can tell on
    # others: the reference fusion rounds both to the same float32 and the first maximum
    # (class 1) wins; the scorer must settle these pairs the same way.
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(5), (4, 60))
    probs[:, :, 1] = probs[:, :, 3] = 0.6  # a clear winner pair on every media
    probs[:, 30:, 3] += 1e-12  # a float64 difference that float32 cannot hold
    probs[2, :6] = np.nan  # with a missing member
    labels = np.where(np.arange(60) % 2 == 0, 1, 3)
    fused = weighted_fusion(probs, np.ones(4), rule)
    assert (fused.argmax(1) == 1).all()  # the documented rule: first maximum wins
    weights = rng.random((50, 4, 5) if per_class else (50, 4))
    if per_class:
        weights[:, :, 3] = weights[:, :, 1]  # the pair weighted alike, so it stays a tie
    scorer = CandidateScorer(probs, labels, rule, "accuracy")
    scores = scorer.scores(weights)
    np.testing.assert_array_equal(
        scores, _reference_scores(probs, labels, weights, rule, "accuracy", 5)
    )
    assert scorer.settled >= 50 * 60  # every pair was undecided in float32 and settled
    np.testing.assert_array_equal(scores, 0.5)  # class 1 on every media: half the labels


@pytest.mark.parametrize("n_models", [5, 8, 12, 17])
@pytest.mark.parametrize("rule", ["sum", "product"])
@pytest.mark.parametrize("per_class", [False, True])
def test_a_media_fuses_to_the_same_bits_alone_in_a_batch_and_in_the_whole_set(
    n_models: int, rule: str, per_class: bool
) -> None:
    # The scorer settles undecided pairs in batches, each media with its own candidate's
    # weights; the reference it must equal is weighted_fusion on the whole set. NumPy's own
    # sums change order with the memory layout (8 or more terms), so these must not use them.
    rng = np.random.default_rng(n_models)
    probs = rng.dirichlet(np.ones(9), (n_models, 40))
    probs[1, :9] = np.nan
    probs[:, 9] = np.nan  # nobody scored this media
    weights = rng.random((40, n_models, 9) if per_class else (40, n_models))
    weights[3] = 0.0
    per_media = weights if per_class else weights[:, :, None]
    order = rng.permutation(40)  # a batch in another order
    batched = fuse_per_media(probs[:, order], per_media[order].transpose(1, 0, 2), rule)
    for i, n in enumerate(order):
        whole = weighted_fusion(probs, weights[n], rule)[n]
        alone = fuse_per_media(probs[:, n : n + 1], per_media[n : n + 1].transpose(1, 0, 2), rule)
        assert whole.tobytes() == batched[i].tobytes() == alone[0].tobytes(), n


@pytest.mark.parametrize("rule", ["sum", "product"])
def test_near_ties_a_few_float32_steps_apart_are_settled_as_the_reference(rule: str) -> None:
    # Two classes whose fused scores differ by 0 to 40 float32 steps, with 17 members: the
    # kernel's float32 sums cannot be trusted there, the pairs must be flagged and settled.
    rng = np.random.default_rng(5)
    n_models, n_media = 17, 120
    probs = rng.dirichlet(np.ones(5), (n_models, n_media)) * 0.2
    probs[:, :, 1] = 0.4
    steps = rng.integers(-40, 41, n_media) * np.finfo(np.float32).eps * 0.4
    probs[:, :, 3] = 0.4 + steps[None, :] * rng.random((n_models, 1))
    probs[2, :10] = np.nan
    labels = rng.choice([1, 3], n_media)
    weights = rng.random((64, n_models))
    scorer = CandidateScorer(probs, labels, rule, "accuracy")
    np.testing.assert_array_equal(
        scorer.scores(weights), _reference_scores(probs, labels, weights, rule, "accuracy", 5)
    )
    assert scorer.settled > 0


@pytest.mark.parametrize("n_media", [1, 7, 8, 9, 17])
@pytest.mark.parametrize("rule", ["sum", "product"])
def test_scores_equal_the_reference_on_tiles_of_media(n_media: int, rule: str) -> None:
    # The kernel keeps the arg-max of eight media at a time: sets smaller than a tile, one
    # tile exactly, and a partial last tile, with presence patterns alternating inside tiles,
    # 10 members (the first four added before the last eight), zero weights and a media that
    # no member scored.
    rng = np.random.default_rng(n_media)
    probs = rng.dirichlet(np.ones(4), (10, n_media))
    probs[0, ::2] = np.nan
    probs[3, 1::3] = np.nan
    probs[:, n_media // 2] = np.nan
    labels = rng.integers(0, 4, n_media)
    weights = rng.random((200, 10, 4))
    weights[7] = 0.0
    weights[8, :, 1] = 0.0
    expected = _reference_scores(probs, labels, weights, rule, "macro_f1", 4)
    scores = CandidateScorer(probs, labels, rule, "macro_f1").scores(weights)
    np.testing.assert_array_equal(scores, expected)


def test_ordered_sums_do_not_depend_on_the_memory_layout() -> None:
    # NumPy's sum runs eight partial sums when the summed axis is the innermost in memory and
    # one term at a time otherwise; the fusion's sums must give the same bits either way.
    rng = np.random.default_rng(2)
    terms = rng.random((17, 300, 1)) * 10.0 ** rng.integers(-3, 3, (17, 300, 1))
    members_inner = np.ascontiguousarray(terms.transpose(1, 2, 0)).transpose(2, 0, 1)
    expected = terms[0].copy()
    for term in terms[1:]:
        expected = expected + term
    for layout in (terms, members_inner):
        assert ordered_sum(layout, axis=0).tobytes() == expected.tobytes()
    np.testing.assert_array_equal(ordered_sum(terms[:0], axis=0), np.zeros((300, 1)))
