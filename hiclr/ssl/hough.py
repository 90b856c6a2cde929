"""Hough-consistent dense pairs (after HoughCL, 2021), variant C: objective `hough_dense`.

A dense InfoNCE over the frame tokens of two views, paired without learnable parameters by Hough voting
over one transform between the views (s = alpha t + beta in time, a joint permutation: identity or
left/right); L = (1 - lambda_dense) L_HiCLR + lambda_dense L_dense. The voting runs under no_grad.
Config: `ssl.objective: hough_dense`, `ssl.options` (see `HoughDenseHiCLR`). Method and options:
docs/method.md, 'The further objectives' (C); the vote and the pairing: docs/internals.md, 'Objectives'.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiclr.augment.ops import NTU_FLIP_ORDER
from hiclr.augment.policy import HICLR_VIEWS

from .learner import HiCLR, at_least_float32, full_precision, register_objective
from .transitive import intra_edges


@dataclass
class HoughResult:
    """Per sample (B,): the voted bin (mode_*) and the refitted transform; pairs (B, T1), -1 = none."""

    mode_alpha: torch.Tensor
    mode_beta: torch.Tensor
    perm: torch.Tensor  # index into the permutations (0 = identity, 1 = left/right)
    alpha: torch.Tensor
    beta: torch.Tensor
    pairs: torch.Tensor
    confidence: torch.Tensor  # (B, T1) in [0, 1]: see `pair_confidence`; 0 where no pair


def match_strength(u1: torch.Tensor, u2: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """sum_v relu(cos(u1[t, v], u2[s, pi(v)]))^3 for each permutation pi: u1 (B, C, T1, V),
    u2 (B, C, T2, V), perms (P, V) -> (B, P, T1, T2); float32 (float64 inputs stay), autocast off."""
    B, _, t1, V = u1.shape
    with full_precision(u1):
        u1, u2 = at_least_float32(u1, u2)
        u1 = rearrange(F.normalize(u1, dim=1), "b c t v -> (b v) t c")
        u2 = F.normalize(u2, dim=1)
        out = []
        for perm in perms:  # one batched matmul per joint pair (v, pi(v))
            cos = torch.bmm(u1, rearrange(u2[..., perm], "b c s v -> (b v) c s"))
            out.append(cos.clamp_min(0).pow(3).view(B, V, t1, -1).sum(dim=1))
        return torch.stack(out, dim=1)


VOTES = ("mean", "sum")


@functools.lru_cache(maxsize=16)
def vote_kernel(
    t1: int, t2: int, scales: tuple[float, ...], bandwidth: float, device, votes: str = "mean", min_overlap: float = 0.5
) -> tuple:
    """(kernel (S, T1 * T2, J), beta bins (J,)): K(s - alpha t - beta) for every (t, s), scale, bin,
    divided by the bin's line length n (`votes: mean`; 0 for bins shorter than min_overlap x T1).
    Fixed by the shapes (cached): the voting has no learnable parameter."""
    t = torch.arange(t1, device=device, dtype=torch.float32)
    s = torch.arange(t2, device=device, dtype=torch.float32)
    alphas = torch.tensor(list(scales), device=device, dtype=torch.float32)
    low = torch.floor(torch.min(-alphas * (t1 - 1))).item() - 1
    betas = torch.arange(low, t2 + 1, device=device, dtype=torch.float32)
    residual = (
        s[None, None, :, None] - alphas[:, None, None, None] * t[None, :, None, None] - betas[None, None, None, :]
    )  # (S, T1, T2, J)
    kernel = (1 - residual.abs() / bandwidth).clamp_min(0).reshape(len(scales), t1 * t2, -1)
    if votes == "mean":
        length = kernel.sum(dim=1, keepdim=True)  # (S, 1, J)
        kernel = torch.where(length >= min_overlap * t1, kernel / length.clamp_min(1e-6), 0.0)
    return kernel, betas


@functools.lru_cache(maxsize=16)
def joint_permutations(num_joints: int, flip_order: tuple[int, ...] | None, device) -> torch.Tensor:
    """(P, V): the identity, and `flip_order` when it permutes V joints; built once per device
    (cached), so a step copies nothing from the host."""
    identity = torch.arange(num_joints, device=device)
    if flip_order is None or len(flip_order) != num_joints:
        return identity[None]
    return torch.stack([identity, torch.tensor(flip_order, device=device)])


@functools.lru_cache(maxsize=16)
def scale_values(scales: tuple[float, ...], device) -> torch.Tensor:
    """The candidate alphas (S,) as a tensor, built once per device (cached)."""
    return torch.tensor(scales, device=device)


class HoughPairing(nn.Module):
    """Parameter-free pairing of the frames of two views by Hough voting (see the module docstring).

    scales: candidate alphas; bandwidth: kernel half-width (frames); tolerance: inlier band of the
    refit (frames); flip_order: the left/right joint permutation (None: identity only); centre:
    subtract each track's temporal mean first (centred skeletons and smooth features look alike in
    every frame, so the raw cosine votes for the longest line instead of the right one); votes:
    "mean" (each line's votes over its length) or "sum"; min_overlap: the shortest line voted for,
    as a share of T1 (votes: mean).
    """

    def __init__(
        self,
        scales: Sequence[float] = (0.8, 1.0, 1.25),
        bandwidth: float = 1.0,
        tolerance: float = 1.0,
        flip_order: Sequence[int] | None = NTU_FLIP_ORDER,
        centre: bool = True,
        votes: str = "mean",
        min_overlap: float = 0.5,
    ):
        super().__init__()
        if votes not in VOTES:
            raise ValueError(f"votes must be one of {', '.join(VOTES)}, got {votes!r}")
        if not 0.0 < float(min_overlap) <= 1.0:
            raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap!r}")
        self.votes, self.min_overlap = votes, float(min_overlap)
        self.centre = bool(centre)
        self.scales = tuple(float(a) for a in scales)
        self.bandwidth, self.tolerance = float(bandwidth), float(tolerance)
        self.flip_order = None if flip_order is None else tuple(flip_order)

    def permutations(self, num_joints: int, device) -> torch.Tensor:
        """(P, V) joint permutations: identity, then left/right when flip_order fits V joints."""
        return joint_permutations(num_joints, self.flip_order, device)

    @torch.no_grad()
    def forward(
        self, u1: torch.Tensor, u2: torch.Tensor, mask1: torch.Tensor | None = None, mask2: torch.Tensor | None = None
    ) -> HoughResult:
        """u1 (B, C, T1, V), u2 (B, C, T2, V) token features; masks (B, T) bool, True = masked frame."""
        B, _, t1, V = u1.shape
        t2 = u2.shape[2]
        if self.centre:
            u1, u2 = u1 - u1.mean(dim=2, keepdim=True), u2 - u2.mean(dim=2, keepdim=True)
        strength = match_strength(u1, u2, self.permutations(V, u1.device))  # (B, P, T1, T2)
        kernel, betas = vote_kernel(t1, t2, self.scales, self.bandwidth, u1.device, self.votes, self.min_overlap)
        votes = torch.einsum("bpn,anj->bpaj", strength.flatten(2), kernel)  # (B, P, S, J)
        P, S, J = votes.shape[1:]
        best = votes.flatten(1).argmax(dim=1)
        perm, rest = best // (S * J), best % (S * J)
        alphas = scale_values(self.scales, u1.device)
        mode_alpha, mode_beta = alphas[rest // J], betas[rest % J]

        # refit on inliers: each t's strongest s within the tolerance band of the mode
        a = strength[torch.arange(B, device=u1.device), perm]  # (B, T1, T2)
        t = torch.arange(t1, device=u1.device, dtype=torch.float32)
        s = torch.arange(t2, device=u1.device, dtype=torch.float32)
        predicted = mode_alpha[:, None] * t + mode_beta[:, None]  # (B, T1)
        band = (s[None, None, :] - predicted[..., None]).abs() <= self.tolerance
        weight, s_best = a.masked_fill(~band, -1.0).max(dim=2)
        weight = weight.clamp_min(0)
        alpha, beta = _weighted_line_fit(t, s_best.float(), weight)
        lo, hi = min(self.scales), max(self.scales)
        trusted = torch.isfinite(alpha) & (alpha >= lo * 0.9) & (alpha <= hi * 1.1)
        trusted &= ((alpha[:, None] * t + beta[:, None]) - predicted).abs().amax(dim=1) <= self.tolerance + 0.5
        trusted &= line_strength(a, alpha, beta) >= line_strength(a, mode_alpha, mode_beta)
        alpha = torch.where(trusted, alpha, mode_alpha)
        beta = torch.where(trusted, beta, mode_beta)

        pairs = drop_invalid_pairs(torch.round(alpha[:, None] * t + beta[:, None]).long(), t2, mask1, mask2)
        return HoughResult(mode_alpha, mode_beta, perm, alpha, beta, pairs, pair_confidence(a, pairs))


def line_strength(strength: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Mean match strength a(t, round(alpha t + beta)) over the t whose pair lies inside view 2:
    strength (B, T1, T2), alpha, beta (B,) -> (B,); -1 where no t does (non-finite lines too)."""
    t1, t2 = strength.shape[1:]
    t = torch.arange(t1, device=strength.device, dtype=torch.float32)
    line = alpha[:, None].float() * t + beta[:, None].float()
    inside = torch.isfinite(line) & (line > -0.5) & (line < t2 - 0.5)
    s = torch.where(inside, line, 0.0).round().long()
    value = torch.gather(strength, 2, s[..., None])[..., 0].masked_fill(~inside, 0.0)
    count = inside.sum(dim=1)
    return torch.where(count > 0, value.sum(dim=1) / count.clamp_min(1), -1.0)


def pair_confidence(strength: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """How strongly each token's own matches back its pair: a(t, p(t)) / max_s a(t, s), strength
    (B, T1, T2) of the voted permutation, pairs (B, T1) -> (B, T1) in [0, 1], 0 where no pair or
    no match. 1: the paired frame is (one of) t's best matches; near 0: t's votes went elsewhere.
    A peak ratio rather than a share of the row's sum: mirrored duplicate frames (reflect-padded
    crops) both score 1, and it does not shrink with the length of view 2."""
    paired = torch.gather(strength, 2, pairs.clamp_min(0)[..., None])[..., 0]
    peak = strength.amax(dim=2)
    ratio = torch.where(peak > 0, paired / peak.clamp_min(torch.finfo(strength.dtype).tiny), 0.0)
    return torch.where(pairs >= 0, ratio, 0.0)


def _weighted_line_fit(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
    """Per row weighted least squares y = alpha x + beta: x (T,), y, w (B, T) -> (alpha, beta) (B,)."""
    sw = w.sum(1)
    mx, my = (w * x).sum(1) / sw, (w * y).sum(1) / sw
    dx = x[None] - mx[:, None]
    var = (w * dx * dx).sum(1)
    alpha = (w * dx * (y - my[:, None])).sum(1) / var
    return alpha, my - alpha * mx


def drop_invalid_pairs(
    pairs: torch.Tensor, t2: int, mask1: torch.Tensor | None = None, mask2: torch.Tensor | None = None
) -> torch.Tensor:
    """pairs (B, T1) frame indices into view 2 -> -1 where outside it or where either frame is masked."""
    valid = (pairs >= 0) & (pairs < t2)
    if mask1 is not None:
        valid &= ~mask1
    if mask2 is not None:
        valid &= ~torch.gather(mask2, 1, pairs.clamp(0, t2 - 1))
    return torch.where(valid, pairs, -1)


def winner_take_all_pairs(u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """The naive pairing: each frame t of view 1 -> its most similar frame of view 2 (B, T1)."""
    return match_strength(u1, u2, torch.arange(u1.shape[-1], device=u1.device)[None])[:, 0].argmax(dim=2)


def frame_mask(view, t: int) -> torch.Tensor | None:
    """(B, T) bool: frames whose every joint is masked (the view's mask (B, 1, T, V, 1)), or None."""
    mask = getattr(view, "mask", None)
    if mask is None:
        return None
    return mask.flatten(3).all(dim=3)[:, 0] if mask.shape[2] == t else None


def oracle_pairs(params1: dict, params2: dict, t1: int, t2: int) -> torch.Tensor:
    """The exact pairing (B, T1) of two views of one clip from their recorded temporal crops
    (`params["temporal_crop"]`: offset, and scale for crop_resize); -1 = outside view 2."""
    crop1, crop2 = params1["temporal_crop"], params2["temporal_crop"]
    t = torch.arange(t1, device=crop1["offset"].device, dtype=torch.float64)
    if "scale" in crop1 or "scale" in crop2:  # crop-resize: through the source position
        step1 = crop1.get("scale", torch.ones_like(crop1["offset"], dtype=torch.float64)).double()
        step2 = crop2.get("scale", torch.ones_like(crop2["offset"], dtype=torch.float64)).double()
        source = crop1["offset"].double()[:, None] + (t + 0.5) * step1[:, None] - 0.5
        pairs = torch.round((source - crop2["offset"].double()[:, None] + 0.5) / step2[:, None] - 0.5)
    else:  # crop of the same padded clip: the same padded position
        pairs = t + (crop1["offset"] - crop2["offset"]).double()[:, None]
    pairs = pairs.long()
    return torch.where((pairs >= 0) & (pairs < t2), pairs, -1)


def oracle_flip(params1: dict, params2: dict, batch: int, device) -> torch.Tensor:
    """(B,) 1 where exactly one of the two views is left/right flipped (pi = LR), else 0."""

    def flipped(params):
        f = params.get("spatial_flip", {}).get("flipped")
        return torch.zeros(batch, dtype=torch.bool, device=device) if f is None else f.to(device)

    return (flipped(params1) ^ flipped(params2)).long()


def view_coordinates(view, t: int) -> torch.Tensor:
    """The joint coordinates a view shows, (N, C, T, V, M) -> (N, M, C, T, V) as a block, with its
    masked entries 0 (what the encoder sees there is its mask token); `t`: the token count the
    votes must pair (block 4 has stride 1, so the view's T)."""
    x = view.x.detach()
    mask = getattr(view, "mask", None)
    if mask is not None:
        x = x.masked_fill(mask, 0.0)
    if x.shape[2] != t:
        raise ValueError(
            f"vote_with: input pairs the views' {x.shape[2]} frames, but the dense tokens "
            f"have {t}; use a feature block of stride 1 (block 4 of ST-GCN)"
        )
    return rearrange(x, "n c t v m -> n m c t v")


@torch.no_grad()
def nearest_other_sample(embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B,) index of each sample's most similar other sample of the batch by the cosine of its
    L2-normalised global embedding (B, D), never itself nor a row of the same sample id (as the
    intra edges of `transitive` block them); -1 where there is none (a batch of one)."""
    with full_precision(embeddings):
        (embeddings,) = at_least_float32(embeddings)
        sim = embeddings @ embeddings.T
    values, index = sim.masked_fill(intra_edges(ids), float("-inf")).max(dim=1)
    return torch.where(torch.isfinite(values), index, -1)


VOTE_WITH = ("query", "key", "input")
PAIR_WITH = ("view", "neighbour")


@register_objective("hough_dense")
class HoughDenseHiCLR(nn.Module):
    """HiCLR plus a dense InfoNCE between the frame tokens (block 4) of two query views, paired by
    Hough voting (`pairing: hough`) or by the recorded crops (`pairing: oracle`).

    dense_views: the two query views (0 = v0, 1 = v1, 2 = v2). block_channels: channels of the
    backbone's block 4 (None: feature_dim // 16, ST-GCN's plan).

    Options for getting the votes right early (at their defaults they change nothing; `votes`
    and `min_overlap` are HoughPairing's):
    vote_with: "query" (the query encoder's block 4, as the tokens), "key": the momentum
        encoder's block 4 on the same two views (no gradient; the learner runs it because the
        objective names the views in `key_block_views`): smoother, slower-moving features; or
        "input": the views' own joint coordinates (`view_coordinates`; joints whatever the
        stream), which carry the geometry from the first step, when a random encoder's block 4
        does not yet.
    dense_warmup_epochs: lambda is 0 for epochs < this (0-based, as the engine counts), so the
        first epochs train HiCLR only while the votes' agreement is still logged.
    lambda_by_agreement: lambda x the batch's measured agreement with the oracle pairing (logged
        as `pair_agreement`; needs recorded crops) or, without the oracle (no recorded crops, or
        pair_with: neighbour), x the mean vote confidence of the paired tokens. A diagnostic:
        with the oracle recorded it uses privileged information that a real run without recorded
        augmentations would not have; the warm-up needs none.
    min_confidence: tokens whose `pair_confidence` is below it are left out of the dense loss
        (0: none); the share of paired tokens kept is logged (`dense_kept`), and with the oracle
        recorded the agreement of the kept pairs (`kept_agreement`).
    pair_with: "view" (two views of one clip: the exact pairing exists) or "neighbour": view 1 of
        each sample against view 2 of its nearest other sample of the batch, by the cosine of the
        momentum keys (`nearest_other_sample`; the key queue holds global keys only, no dense
        tokens, so the neighbour is mined inside the batch). A different clip: no exact pairing
        exists, Hough voting is the only pairing (`pairing: oracle` is refused), no agreement is
        logged, and the tokens of both the sample and its neighbour are left out of the negatives.
    """

    views = HICLR_VIEWS
    feature_block = 4

    def __init__(
        self,
        feature_dim: int = 256,
        temperature: float = 0.07,
        mining_epoch: int = 150,
        topk: int = 1,
        lambda_dense: float = 0.5,
        dense_views: Sequence[int] = (0, 1),
        pairing: str = "hough",
        scales: Sequence[float] = (0.8, 1.0, 1.25),
        bandwidth: float = 1.0,
        tolerance: float = 1.0,
        centre: bool = True,
        votes: str = "mean",
        min_overlap: float = 0.5,
        dense_dim: int = 128,
        dense_hidden: int | None = None,
        dense_temperature: float = 0.2,
        negative_stride: int = 4,
        block_channels: int | None = None,
        vote_with: str = "query",
        dense_warmup_epochs: int = 0,
        lambda_by_agreement: bool = False,
        min_confidence: float = 0.0,
        pair_with: str = "view",
    ):
        super().__init__()
        if pairing not in ("hough", "oracle"):
            raise ValueError(f"pairing must be 'hough' or 'oracle', got {pairing!r}")
        if len(dense_views) != 2 or dense_views[0] == dense_views[1]:
            raise ValueError(f"dense_views must name two different query views, got {dense_views!r}")
        if vote_with not in VOTE_WITH:
            raise ValueError(f"vote_with must be one of {', '.join(VOTE_WITH)}, got {vote_with!r}")
        if pair_with not in PAIR_WITH:
            raise ValueError(f"pair_with must be one of {', '.join(PAIR_WITH)}, got {pair_with!r}")
        if pair_with == "neighbour" and pairing == "oracle":
            raise ValueError(
                "pair_with: neighbour pairs two different clips, for which no exact pairing exists; use pairing: hough"
            )
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        if min_confidence and pairing == "oracle":
            raise ValueError("min_confidence filters Hough pairs; with pairing: oracle set it to 0")
        if int(dense_warmup_epochs) < 0:
            raise ValueError(f"dense_warmup_epochs must be >= 0, got {dense_warmup_epochs!r}")
        self.hiclr = HiCLR(temperature, mining_epoch, topk)
        self.lambda_dense = float(lambda_dense)
        self.dense_views = tuple(int(v) for v in dense_views)
        self.pairing_mode = pairing
        self.needs_view_params = pairing == "oracle"  # hough pairing logs its agreement when recorded
        self.pairing = HoughPairing(scales, bandwidth, tolerance, centre=centre, votes=votes, min_overlap=min_overlap)
        self.dense_temperature = float(dense_temperature)
        self.negative_stride = max(1, int(negative_stride))
        self.vote_with, self.pair_with = vote_with, pair_with
        self.key_block_views = self.dense_views if vote_with == "key" else ()  # read by the learner
        self.dense_warmup_epochs = int(dense_warmup_epochs)
        self.lambda_by_agreement = bool(lambda_by_agreement)
        self.min_confidence = float(min_confidence)
        channels = block_channels or max(1, feature_dim // 16)
        hidden = dense_hidden or channels
        self.dense_head = nn.Sequential(
            nn.Conv1d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv1d(hidden, dense_dim, 1)
        )

    def switches(self, epoch: int) -> dict[str, bool]:
        """HiCLR's mining, and `warmup` (lambda 0) for epochs < dense_warmup_epochs."""
        return {**self.hiclr.switches(epoch), "warmup": epoch < self.dense_warmup_epochs}

    def tokens(self, block: torch.Tensor) -> torch.Tensor:
        """Frame tokens: block (N, M, C, T, V) -> dense head over the persons' and joints' mean ->
        L2-normalised (N, dense_dim, T)."""
        return F.normalize(self.dense_head(block.mean(dim=(1, 4))), dim=1)

    def dense_nce(
        self, q1: torch.Tensor, q2: torch.Tensor, pairs: torch.Tensor, partners: torch.Tensor | None = None
    ) -> torch.Tensor:
        """InfoNCE of each paired token of view 1 (N, D, T1) with its partner in view 2 (N, D, T2)
        of sample `partners[n]` (N,) (None: the same sample); negatives: every
        `negative_stride`-th token of view 2 of the samples other than the anchor's and its partner's.
        Logits and loss in float32 (float64 tokens stay float64), autocast off."""
        with full_precision(q1):
            return self._dense_nce(*at_least_float32(q1, q2), pairs, partners)

    def _dense_nce(self, q1, q2, pairs, partners):
        # every token is scored and the unpaired ones are weighted 0 (fixed shapes, no host
        # branch); with no pair at all the loss is 0
        n, d, t1 = q1.shape
        valid = (pairs >= 0).reshape(-1)  # (N T1,)
        anchors = q1.permute(0, 2, 1).reshape(n * t1, d)  # (N T1, D)
        sample = torch.arange(n, device=q1.device)[:, None].expand(n, t1).reshape(-1)
        partner_sample = sample if partners is None else partners[sample]
        partner = q2.permute(0, 2, 1)[partner_sample, pairs.reshape(-1).clamp_min(0)]  # (N T1, D)
        negatives = q2[:, :, :: self.negative_stride].permute(0, 2, 1)  # (N, T', D)
        owner = torch.arange(n, device=q1.device)[:, None].expand(negatives.shape[:2]).reshape(-1)
        neg_logits = anchors @ negatives.reshape(-1, negatives.shape[-1]).T
        excluded = owner[None, :] == sample[:, None]
        if partners is not None:
            excluded = excluded | (owner[None, :] == partner_sample[:, None])
        neg_logits = neg_logits.masked_fill(excluded, float("-inf"))
        logits = torch.cat([(anchors * partner).sum(1, keepdim=True), neg_logits], 1)
        per_token = -F.log_softmax(logits / self.dense_temperature, dim=1)[:, 0]
        per_token = torch.where(valid, per_token, 0.0)
        return per_token.sum() / valid.sum().clamp_min(1).to(per_token.dtype)

    def vote_blocks(self, inputs, view1, view2) -> tuple[torch.Tensor, torch.Tensor]:
        """The two features (N, M, C, T, V) the votes are cast on (`vote_with`), detached: block 4
        of the query or the key encoder, or the coordinates of the dense views `view1`, `view2`."""
        i, j = self.dense_views
        if self.vote_with == "query":
            return inputs.query_blocks[i].detach(), inputs.query_blocks[j].detach()
        if self.vote_with == "input":
            return (
                view_coordinates(view1, inputs.query_blocks[i].shape[3]),
                view_coordinates(view2, inputs.query_blocks[j].shape[3]),
            )
        if i not in inputs.key_blocks or j not in inputs.key_blocks:
            raise ValueError(
                "vote_with: key needs the key encoder's block features of the dense views "
                "(ContrastiveInputs.key_blocks; the learner fills it from key_block_views)"
            )
        return inputs.key_blocks[i], inputs.key_blocks[j]

    def dense_weight(self, inputs, agreement: torch.Tensor | None, confidence: torch.Tensor):
        """lambda of this step: 0 during the warm-up, else lambda_dense, times the measured
        agreement (or the mean confidence) with `lambda_by_agreement`."""
        if inputs.warmup:
            return 0.0
        if not self.lambda_by_agreement:
            return self.lambda_dense
        return self.lambda_dense * (confidence if agreement is None else agreement)

    def forward(self, inputs):
        loss_hiclr, metrics = self.hiclr(inputs)
        if len(inputs.query_blocks) <= max(self.dense_views):
            raise ValueError(
                "the hough_dense objective needs block-4 features of the query views "
                "(ContrastiveInputs.query_blocks; the backbone needs forward_features)"
            )
        i, j = self.dense_views
        block1, block2 = inputs.query_blocks[i], inputs.query_blocks[j]
        query_views = [v for k, v in enumerate(inputs.views) if k != self.views.key_index]
        view1, view2 = query_views[i], query_views[j]
        t1, t2 = block1.shape[3], block2.shape[3]
        mask1, mask2 = frame_mask(view1, t1), frame_mask(view2, t2)
        partners = None
        with torch.no_grad():
            vote1, vote2 = self.vote_blocks(inputs, view1, view2)
            if self.pair_with == "neighbour":
                partners = nearest_other_sample(inputs.key, inputs.ids)
                chosen = partners.clamp_min(0)
                vote2 = vote2[chosen]
                mask2 = None if mask2 is None else mask2[chosen]
            hough = self.pairing(vote1.mean(dim=1), vote2.mean(dim=1), mask1, mask2)
            if partners is not None:
                hough.pairs = torch.where((partners >= 0)[:, None], hough.pairs, -1)
                hough.confidence = torch.where(hough.pairs >= 0, hough.confidence, 0.0)
            paired = hough.pairs >= 0
            confidence = (hough.confidence * paired).sum() / paired.sum().clamp_min(1)
            metrics["vote_confidence"] = confidence
            params1, params2 = getattr(view1, "params", None) or {}, getattr(view2, "params", None) or {}
            oracle = agreement = None
            if partners is None and "temporal_crop" in params1 and "temporal_crop" in params2:
                oracle = drop_invalid_pairs(oracle_pairs(params1, params2, t1, t2), t2, mask1, mask2)
                counted = oracle >= 0
                agreement = ((hough.pairs == oracle) & counted).sum().float() / counted.sum().clamp_min(1).float()
                metrics["pair_agreement"] = agreement
                flip = oracle_flip(params1, params2, block1.shape[0], block1.device)
                metrics["flip_agreement"] = (hough.perm == flip).float().mean()
        if self.pairing_mode == "oracle":
            if oracle is None:
                raise ValueError("pairing: oracle needs the views' recorded temporal_crop params")
            pairs = oracle
        else:
            pairs = hough.pairs
            if self.min_confidence > 0:
                kept = paired & (hough.confidence >= self.min_confidence)
                pairs = torch.where(kept, pairs, -1)
                metrics["dense_kept"] = kept.sum().float() / paired.sum().clamp_min(1).float()
                if oracle is not None:  # of the kept tokens that have an exact partner
                    judged = kept & (oracle >= 0)
                    metrics["kept_agreement"] = ((pairs == oracle) & judged).sum().float() / judged.sum().clamp_min(
                        1
                    ).float()
        loss_dense = self.dense_nce(self.tokens(block1), self.tokens(block2), pairs, partners)
        lambda_dense = self.dense_weight(inputs, agreement, confidence)
        loss = (1 - lambda_dense) * loss_hiclr + lambda_dense * loss_dense
        metrics.update(
            loss=loss.detach(),
            loss_hiclr=loss_hiclr.detach(),
            loss_dense=loss_dense.detach(),
            paired_tokens=(pairs >= 0).float().mean(),
        )
        if self.dense_warmup_epochs or self.lambda_by_agreement:
            if not torch.is_tensor(lambda_dense):  # a device scalar, nothing copied from the host
                lambda_dense = torch.full((), lambda_dense, dtype=torch.float32, device=loss.device)
            metrics["lambda_dense"] = lambda_dense.to(torch.float32).detach()
        return loss, metrics
