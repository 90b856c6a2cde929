"""Equivariant contrast (after PeCLR, ICCV 2021), variant A: objective `equivariant`.

An auxiliary head Z(x) = reshape(MLP(h), K, 3) on the backbone feature is asked to move like joints
under the policy's per-joint linear maps, Z(Ax) = Z(x) A^T; each view's points are mapped back,
Z~ = Z(Ax) A^-T, and the canonicalised query and key are contrasted with InfoNCE against a queue of
their own: L = L_HiCLR + lambda_eq * L_eq. Config: `ssl.objective: equivariant`, `ssl.options:
{lambda_eq, num_points, eq_hidden, eq_temperature, eq_branches}`. Method: docs/method.md, 'The further
objectives' (A); the key side and the logged metrics: docs/internals.md, 'Objectives'.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiclr.augment.ops import apply_matrix
from hiclr.augment.policy import HICLR_VIEWS

from .learner import HiCLR, contrastive_logits, full_precision, register_objective
from .queue import KeyQueue


def canonicalize(z: torch.Tensor, matrix: torch.Tensor, singular: torch.Tensor | None = None) -> torch.Tensor:
    """Z A^-T for z (N, K, 3) and A (N, 3, 3), solved in float64; rows flagged `singular` (N,)
    are returned as they are (an axis-masked view has no inverse)."""
    A = matrix.to(torch.float64)
    if singular is not None:
        eye = torch.eye(3, dtype=A.dtype, device=A.device)
        A = torch.where(singular[:, None, None], eye, A)
    # Z A^-T = (A^-1 Z^T)^T
    out = torch.linalg.solve(A, z.to(torch.float64).transpose(1, 2)).transpose(1, 2)
    return out.to(z.dtype)


def invert_view(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """A^-1 x' for a clip x' (N, C=3, T, V, M) made by x' = A x: undoes the view's geometric map."""
    inverse = torch.linalg.inv(matrix.to(torch.float64))
    return apply_matrix(inverse, x.to(torch.float64)).to(x.dtype)


def equivariance_error(z_transformed: torch.Tensor, matrix: torch.Tensor, z_reference: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ||Z(Ax) A^-T - Z(x)|| / ||Z(x)||, z_* (N, K, 3)."""
    diff = canonicalize(z_transformed, matrix) - z_reference
    return (diff.flatten(1).norm(dim=1) / z_reference.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()


def _view_geometry(view, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (N, 3, 3), singular (N,) bool) recorded by the policy for one view."""
    params = getattr(view, "params", None) or {}
    if "matrix" not in params:
        raise ValueError(
            "the equivariant objective needs each view's recorded params['matrix']; "
            "build the growing policy with record=True"
        )
    singular = params.get("singular")
    if singular is None:
        singular = torch.zeros(n, dtype=torch.bool, device=device)
    return params["matrix"].to(device), singular.to(device=device, dtype=torch.bool)


@register_objective("equivariant")
class EquivariantContrast(nn.Module):
    """HiCLR plus an equivariant auxiliary InfoNCE on canonicalised point sets Z~ (K points in 3-D).

    eq_branches: indices of the query views (v0, v1, v2 -> 0, 1, 2) contrasted with the key.
    """

    views = HICLR_VIEWS
    needs_view_params = True

    def __init__(
        self,
        feature_dim: int = 256,
        temperature: float = 0.07,
        mining_epoch: int = 150,
        topk: int = 1,
        queue_size: int = 32768,
        momentum: float = 0.999,
        lambda_eq: float = 1.0,
        num_points: int = 42,
        eq_hidden: int = 256,
        eq_temperature: float | None = None,
        eq_branches: Sequence[int] = (0, 1),
    ):
        super().__init__()
        if not eq_branches:
            raise ValueError("eq_branches must name at least one query view (0 = v0)")
        self.hiclr = HiCLR(temperature, mining_epoch, topk)
        self.lambda_eq = float(lambda_eq)
        self.num_points = int(num_points)
        self.eq_temperature = float(temperature if eq_temperature is None else eq_temperature)
        self.eq_branches = tuple(int(b) for b in eq_branches)
        self.momentum = float(momentum)
        self.head = nn.Sequential(
            nn.Linear(feature_dim, eq_hidden), nn.ReLU(inplace=True), nn.Linear(eq_hidden, 3 * self.num_points)
        )
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.eq_queue = KeyQueue(queue_size, 3 * self.num_points)

    def switches(self, epoch: int) -> dict[str, bool]:
        return self.hiclr.switches(epoch)

    def points(self, head: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """Z = reshape(head(h), K, 3): (N, feature_dim) -> (N, K, 3)."""
        return rearrange(head(features), "n (k c) -> n k c", c=3)

    @torch.no_grad()
    def momentum_update(self) -> None:
        key_params = list(self.key_head.parameters())
        torch._foreach_mul_(key_params, self.momentum)
        torch._foreach_add_(key_params, [p.detach() for p in self.head.parameters()], alpha=1.0 - self.momentum)

    def forward(self, inputs):
        loss, metrics = self.hiclr(inputs)
        if inputs.key_features is None or not inputs.query_features:
            raise ValueError(
                "the equivariant objective needs the backbone features of the key and "
                "the queries (ContrastiveInputs.key_features, query_features)"
            )
        n, device = inputs.key.shape[0], inputs.key.device
        query_views = [v for i, v in enumerate(inputs.views) if i != self.views.key_index]
        with torch.no_grad():
            self.momentum_update()
            key_matrix, key_singular = _view_geometry(inputs.views[self.views.key_index], n, device)
            key_points = canonicalize(self.points(self.key_head, inputs.key_features), key_matrix, key_singular)
            key_vec = F.normalize(key_points.flatten(1), dim=1)
            queue, _ = self.eq_queue.snapshot()  # no copy: intact until the enqueue after next

        losses, canonical, valid_rows = [], {}, []
        for b in self.eq_branches:
            matrix, singular = _view_geometry(query_views[b], n, device)
            z = canonicalize(self.points(self.head, inputs.query_features[b]), matrix, singular)
            canonical[b] = (z, ~singular)
            valid = ~singular & ~key_singular
            with full_precision(z):  # logits and loss in float32
                logits = contrastive_logits(F.normalize(z.flatten(1), dim=1), key_vec, queue, self.eq_temperature)
                per_row = -F.log_softmax(logits, dim=1)[:, 0]
                weight = valid.to(per_row.dtype)
                losses.append((per_row * weight).sum() / weight.sum().clamp_min(1.0))
                valid_rows.append(weight.mean())
        loss_eq = torch.stack(losses).mean()
        self.eq_queue.enqueue(key_vec, inputs.ids)  # singular keys go in uncanonicalised: negatives only

        total = loss + self.lambda_eq * loss_eq
        metrics.update(loss=total.detach(), loss_eq=loss_eq.detach(), eq_valid=torch.stack(valid_rows).mean().detach())
        if len(canonical) > 1:
            (ref, ref_ok), *others = [canonical[b] for b in self.eq_branches]
            with torch.no_grad():
                errors = []
                for z, ok in others:
                    both = (ok & ref_ok).to(z.dtype)
                    rel = (z - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-12)
                    errors.append((rel * both).sum() / both.sum().clamp_min(1.0))
                metrics["eq_error"] = torch.stack(errors).mean()
        return total, metrics
