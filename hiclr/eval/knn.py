"""Weighted cosine k-nearest-neighbour classifier on frozen features (InstDisc, Wu et al. 2018).

Each test feature votes with its `k` most similar training features (cosine similarity); a
neighbour of class c adds exp(similarity / temperature) to the score of c.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hiclr.eval.common import classification_summary


@torch.no_grad()
def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class scores (N_test, classes) from weighted voting of the k nearest training samples.

    train_features (N, D), train_labels (N,), test_features (N_test, D); chunks of test samples
    bound the memory of the similarity matrix.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, train_features.shape[0])
    bank = F.normalize(train_features.float(), dim=1)
    labels = train_labels.long().to(bank.device)
    scores = []
    for start in range(0, test_features.shape[0], chunk_size):
        query = F.normalize(test_features[start : start + chunk_size].float().to(bank.device), dim=1)
        sim, idx = (query @ bank.T).topk(k, dim=1)  # (B, k)
        weight = (sim / temperature).exp()
        votes = torch.zeros(query.shape[0], num_classes, device=bank.device)
        votes.scatter_add_(1, labels[idx], weight)
        scores.append(votes)
    return torch.cat(scores) if scores else torch.zeros(0, num_classes)


def knn_evaluate(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.1,
) -> dict:
    """kNN top-1/top-5 (percent), per-class accuracy, confusion matrix and the scores."""
    scores = knn_scores(train_features, train_labels, test_features, num_classes, k, temperature)
    return {
        **classification_summary(scores, test_labels, num_classes),
        "k": k,
        "temperature": temperature,
        "scores": scores.cpu(),
    }


def run_knn(cfg: dict, encoder, *, out=None, progress: bool = True, plots: bool = True) -> dict:
    """`hiclr knn`: kNN on the (cached) frozen features; writes the report; returns the entry.

    encoder: a checkpoint path, an `nn.Module` or a `Baseline` (`raw`, `random`: built on the
    loaded training split). Uses `eval.k` and `eval.knn_temperature`; the features are shared with
    `hiclr linear` when both run into the same folder.
    """
    from hiclr.eval.common import finish_run, frozen_features, start_frozen_run

    run = start_frozen_run(cfg, encoder, out, "knn")
    data, device = run.data, run.device
    train_f, test_f = frozen_features(run.run_dir, run.model, run.meta, data, cfg, device, progress)
    result = knn_evaluate(
        train_f.to(device),
        data.train.labels,
        test_f.to(device),
        data.test.labels,
        data.num_classes,
        int(cfg["eval"]["k"]),
        float(cfg["eval"]["knn_temperature"]),
    )
    result.pop("scores")
    return finish_run(
        run.run_dir, "knn", result, cfg, data, run.meta, plots=plots, embedding=(test_f, data.test.labels)
    )
