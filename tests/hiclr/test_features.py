"""Frozen features and the random-init baseline's BatchNorm recalibration."""

import torch

from hiclr.features import extract_features, recalibrate_batchnorm
from hiclr.models import build_encoder


def test_recalibrated_batchnorm_holds_the_statistics_of_the_data():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 50, 25, 2) * 3.0 + 1.5
    encoder = build_encoder({"name": "stgcn", "width": 2})
    recalibrate_batchnorm(encoder, x, batch_size=64)
    assert not encoder.training
    flat = x.permute(0, 4, 3, 1, 2).reshape(64 * 2, 75, 50)  # (N M, V C, T), as data_bn sees it
    expected_mean = flat.mean(dim=(0, 2))
    assert torch.allclose(encoder.data_bn.running_mean, expected_mean, atol=1e-4)


def test_random_init_features_spread_only_after_recalibration():
    torch.manual_seed(0)
    x = torch.randn(32, 3, 50, 25, 2) * 0.3 + 2.0
    encoder = build_encoder({"name": "stgcn", "width": 2})
    before = extract_features(encoder, x).std(dim=0).mean()
    after = extract_features(recalibrate_batchnorm(encoder, x), x).std(dim=0).mean()
    assert after > 3 * before
