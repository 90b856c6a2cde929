"""Weighted cosine kNN (InstDisc voting) on constructed features."""

from __future__ import annotations

import math

import pytest
import torch

from hiclr.eval.knn import knn_evaluate, knn_scores


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_similarity_weighting_beats_a_plain_majority():
    # neighbours of the query at 0 deg: one class-0 sample at 0 deg, two class-1 samples at 60 deg
    train = torch.tensor([unit(0), unit(60), unit(60), unit(180)]) * torch.tensor([[1.0], [2.0], [3.0], [1.0]])
    labels = torch.tensor([0, 1, 1, 2])
    scores = knn_scores(train, labels, torch.tensor([unit(0)]), num_classes=3, k=3, temperature=0.1)
    expected = torch.tensor([[math.exp(1 / 0.1), 2 * math.exp(0.5 / 0.1), 0.0]])
    torch.testing.assert_close(scores, expected)
    assert scores.argmax().item() == 0
    # with a high temperature the weights flatten and the majority wins
    flat = knn_scores(train, labels, torch.tensor([unit(0)]), num_classes=3, k=3, temperature=100.0)
    assert flat.argmax().item() == 1


def test_cosine_similarity_ignores_feature_norms():
    # k = 2: both the choice of neighbours and their weights depend on the norms unless both the
    # bank and the queries are normalised (a dot product would pick the two long class-1 vectors)
    train = torch.tensor([unit(10), unit(100), unit(120)]) * torch.tensor([[1.0], [100.0], [100.0]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([unit(20), unit(110)]) * torch.tensor([[50.0], [0.01]])
    scores = knn_scores(train, labels, test, num_classes=2, k=2, temperature=0.1)
    cos = lambda deg: math.cos(math.radians(deg))  # noqa: E731
    expected = torch.tensor([[math.exp(cos(10) / 0.1), math.exp(cos(80) / 0.1)], [0.0, 2 * math.exp(cos(10) / 0.1)]])
    torch.testing.assert_close(scores, expected)
    unit_norm = knn_scores(
        torch.nn.functional.normalize(train, dim=1),
        labels,
        torch.nn.functional.normalize(test, dim=1),
        num_classes=2,
        k=2,
        temperature=0.1,
    )
    torch.testing.assert_close(scores, unit_norm)


def test_knn_evaluate_reports_top1_and_top5_on_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1) * 3
    labels = torch.arange(6).repeat(10)
    train = centres[labels] + 0.1 * torch.randn(60, 8, generator=g)
    test_labels = torch.tensor([0, 1, 2, 3, 4, 5, 5, 4])
    test = centres[test_labels] + 0.1 * torch.randn(8, 8, generator=g)
    result = knn_evaluate(train, labels, test, test_labels, num_classes=6, k=20, temperature=0.1)
    assert result["top1"] == pytest.approx(100.0) and result["top5"] == pytest.approx(100.0)
    assert result["per_class"] == [100.0] * 6
    assert sum(map(sum, result["confusion"])) == 8


def test_k_larger_than_the_bank_uses_every_sample_and_chunks_agree():
    g = torch.Generator().manual_seed(1)
    train, labels = torch.randn(7, 4, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    test = torch.randn(9, 4, generator=g)
    whole = knn_scores(train, labels, test, 3, k=50)
    chunked = knn_scores(train, labels, test, 3, k=50, chunk_size=2)
    torch.testing.assert_close(whole, chunked)
    sims = torch.nn.functional.normalize(test, dim=1) @ torch.nn.functional.normalize(train, dim=1).T
    torch.testing.assert_close(whole.sum(1), (sims / 0.1).exp().sum(1))
