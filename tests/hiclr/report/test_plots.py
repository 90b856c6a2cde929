"""The 2-D feature map of the reports: t-SNE when scikit-learn is installed, PCA otherwise, and it says which."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from hiclr.report.plots import embedding_2d, pca_2d, plot_embedding, read_png_data


def _clusters():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(20)
    return torch.randn(3, 8, generator=g)[labels] * 5 + torch.randn(60, 8, generator=g), labels


def test_without_scikit_learn_the_map_is_the_pca_and_the_figure_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    features, labels = _clusters()
    coords, method = embedding_2d(features)
    assert method == "PCA" and torch.equal(coords, pca_2d(features))
    fig = plot_embedding(features, labels, tmp_path / "e.png")
    assert read_png_data(tmp_path / "e.png")["method"] == "PCA"
    ax = fig.axes[0]
    assert "(PCA" in ax.get_title() and ax.get_xlabel() == "PC 1"


def test_with_scikit_learn_the_map_is_a_seeded_tsne_and_the_figure_says_so(tmp_path):
    pytest.importorskip("sklearn")
    features, labels = _clusters()
    a, method = embedding_2d(features, seed=1)
    b, _ = embedding_2d(features, seed=1)
    assert method == "t-SNE" and a.shape == (60, 2) and torch.equal(a, b)
    centres = torch.stack([a[labels == c].mean(0) for c in range(3)])
    spread = max(float(a[labels == c].std(0).norm()) for c in range(3))
    assert float(torch.cdist(centres, centres).topk(2, largest=False).values[:, 1].min()) > spread
    fig = plot_embedding(features, labels, tmp_path / "e.png")
    data = read_png_data(tmp_path / "e.png")
    assert data["method"] == "t-SNE" and np.isfinite(data["x"]).all()
    assert "(t-SNE)" in fig.axes[0].get_title() and fig.axes[0].get_xlabel() == "t-SNE 1"
