"""Greedy ensemble selection (forward selection with replacement) over model predictions.

Starting from the best single model, each round adds the model (a model may be added again)
whose addition most improves the validation metric of the averaged predictions; the weights
are the number of times each model was picked. Every round's candidates are scored together
with :class:`~raypipe.fusion.methods.weighted.CandidateScorer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypipe.fusion.methods.registry import FusionContext, register_fusion
from raypipe.fusion.methods.weighted import CandidateScorer, WeightedFusion, normalise


@dataclass
class GreedySelection:
    """Forward selection with replacement.

    Attributes:
        rounds: models added after the first one (at most).
        rules: fusion rules of the averaged predictions tried ('sum', 'product').
        metric: validation metric maximised.
    """

    rounds: int = 20
    rules: tuple[str, ...] = ("sum",)
    metric: str = "macro_f1"

    @property
    def name(self) -> str:
        """Fused model name of this method."""
        return "greedy"

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> WeightedFusion:
        """Select models on (M, N, C) probabilities of labelled media, for each rule; keep the
        rule whose selection scores best (the first rule on ties)."""
        best: tuple[float, WeightedFusion] | None = None
        for rule in self.rules:
            score, counts = self._select(CandidateScorer(probs, labels, rule, self.metric))
            if best is None or score > best[0]:
                best = (score, WeightedFusion(normalise(counts), rule))
        assert best is not None
        return best[1]

    def _select(self, scorer: CandidateScorer) -> tuple[float, np.ndarray]:
        n_models = scorer.n_models
        singles = scorer.scores(np.eye(n_models))
        counts = np.zeros(n_models)
        counts[int(np.argmax(singles))] = 1
        best_counts, best_score = counts.copy(), float(singles.max())
        for _ in range(self.rounds):
            candidates = counts[None, :] + np.eye(n_models)
            scores = scorer.scores(candidates)
            pick = int(np.argmax(scores))
            counts = candidates[pick]
            # Keep the best prefix; later rounds may wander while staying level (plateaus).
            if scores[pick] > best_score:
                best_counts, best_score = counts.copy(), float(scores[pick])
        return best_score, best_counts


# -- registration ----------------------------------------------------------------------
@register_fusion(
    "greedy", description="greedy ensemble selection with replacement; weights are pick counts"
)
def build_greedy(context: FusionContext) -> GreedySelection:
    config = context.config
    return GreedySelection(config.greedy_rounds, tuple(config.rules), config.metric)
