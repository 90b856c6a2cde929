"""Self-supervised pre-training: the MoCo-style learner with its objectives, and its key queue."""

from . import equivariant, hough, transitive  # noqa: F401, E402  (register the further objectives)
from .learner import (
    OBJECTIVES,
    ContrastiveInputs,
    ContrastiveLearner,
    HierarchicalConsistencyLoss,
    ProjectedEncoder,
    build_objective,
    contrastive_logits,
    embedding_spread,
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
