"""Closeness of two computations of the same function, relative to the size of the reference result."""

from __future__ import annotations

import torch


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| (0 when both are 0), in float64."""
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = expected.norm()
    diff = (actual - expected).norm()
    return float(diff / scale) if scale > 0 else float(diff)


def assert_relatively_close(actual, expected, tol: float = 1e-5, what: str = "") -> None:
    """Each tensor of `actual` within `tol` relative (Frobenius norm) of the one of `expected`."""
    if torch.is_tensor(actual):
        actual, expected = [actual], [expected]
    assert len(actual) == len(expected), what
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"{what}[{i}]: shape {tuple(a.shape)} != {tuple(e.shape)}"
        err = relative_error(a, e)
        assert err <= tol, f"{what}[{i}]: relative error {err:.2e} > {tol:.0e}"
