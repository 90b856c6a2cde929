"""Self-supervised pre-training: the MoCo-style learner, its key queue and the objectives."""

from . import equivariant, hough, transitive  # noqa: F401, E402  (register the further objectives)
from .learner import ContrastiveLearner, ProjectedEncoder, embedding_spread
from .objectives import (
    OBJECTIVES,
    ContrastiveInputs,
    HierarchicalConsistencyLoss,
    build_objective,
    contrastive_logits,
    mine_positives,
    multi_positive_nce,
    register_objective,
)
from .queue import KeyQueue

__all__ = [
    "ContrastiveLearner",
    "ProjectedEncoder",
    "embedding_spread",
    "KeyQueue",
    "OBJECTIVES",
    "ContrastiveInputs",
    "HierarchicalConsistencyLoss",
    "build_objective",
    "contrastive_logits",
    "mine_positives",
    "multi_positive_nce",
    "register_objective",
]
