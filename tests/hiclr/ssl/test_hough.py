"""Hough-consistent dense pairs (variant C): voting, refit, oracle pairing, the objective."""

import pytest
import torch

from hiclr.augment import NTU_FLIP_ORDER, GrowingPolicy
from hiclr.ssl import ContrastiveLearner
from hiclr.ssl.hough import (
    HoughDenseHiCLR,
    HoughPairing,
    drop_invalid_pairs,
    line_strength,
    match_strength,
    oracle_pairs,
    vote_kernel,
    winner_take_all_pairs,
)

C, T, V = 16, 50, 25


def smooth_features(gen, channels=C, joints=V):
    """A smooth random feature track u(pos) (C, len(pos), V): sums of random sinusoids in time."""
    freq = torch.rand(channels, joints, 6, generator=gen) * 0.6 + 0.05
    phase = torch.rand(channels, joints, 6, generator=gen) * 6.28
    amp = torch.randn(channels, joints, 6, generator=gen)

    def at(pos):
        waves = amp[..., None, :] * torch.cos(freq[..., None, :] * pos[None, None, :, None] + phase[..., None, :])
        return waves.sum(-1).permute(0, 2, 1)

    return at


def test_known_offset_and_scale_with_distractors_is_recovered_within_one_bin():
    pairing = HoughPairing(scales=(0.8, 1.0, 1.25))
    hits, seeds = 0, 60
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        alpha = (0.8, 1.0, 1.25)[seed % 3]
        beta = float(torch.randint(-6, 7, (1,), generator=gen))
        track = smooth_features(gen)
        frames = torch.arange(T, dtype=torch.float32)
        u1, u2 = track(frames + 20), track((frames - beta) / alpha + 20)  # s = alpha t + beta
        distractors = torch.rand(T, generator=gen) < 0.3
        u2[:, distractors] = torch.randn(C, int(distractors.sum()), V, generator=gen)
        result = pairing(u1[None], u2[None])
        hits += bool(result.mode_alpha.item() == pytest.approx(alpha) and abs(result.mode_beta.item() - beta) <= 1.0)
    assert hits >= 0.95 * seeds


def drifting_track(gen, channels=C, joints=V):
    """A random track (C, len(pos), V) with a slow drift under its faster motion: frames a few apart
    are nearly alike, as in a clip's still stretches, so a wrong line that stays longer inside
    view 2 gathers many moderately good matches."""

    def waves(low, high):
        freq = torch.rand(channels, joints, 4, generator=gen) * (high - low) + low
        phase = torch.rand(channels, joints, 4, generator=gen) * 6.28
        return lambda pos: torch.cos(freq[..., None, :] * pos[None, None, :, None] + phase[..., None, :]).sum(-1)

    slow, fast = waves(0.02, 0.08), waves(0.1, 0.3)
    return lambda pos: (slow(pos) + 1.2 * fast(pos)).permute(0, 2, 1)


def test_mean_votes_find_a_large_shift_that_summed_votes_lose_to_a_longer_line():
    found = {"mean": 0, "sum": 0}
    frames = torch.arange(T, dtype=torch.float32)
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        shift = int(torch.randint(10, 15, (1,), generator=gen))
        track = drifting_track(gen)
        u1, u2 = track(frames), track(frames + shift)  # s = t - shift
        for votes in found:
            result = HoughPairing(votes=votes)(u1[None], u2[None])
            found[votes] += bool(result.mode_alpha.item() == 1.0 and result.mode_beta.item() == -shift)
    assert found["mean"] == 20 and found["sum"] <= 10, found


def test_a_mean_vote_is_the_lines_summed_kernel_over_its_length_and_short_lines_get_none():
    summed, betas = vote_kernel(20, 20, (0.8, 1.0, 1.25), 1.0, torch.device("cpu"), "sum")
    mean, _ = vote_kernel(20, 20, (0.8, 1.0, 1.25), 1.0, torch.device("cpu"), "mean", 0.5)
    length = summed.sum(dim=1)  # (S, J): the line's length
    long = length >= 10
    torch.testing.assert_close(mean.sum(dim=1)[long], torch.ones(int(long.sum())))
    assert torch.all(mean.sum(dim=1)[~long] == 0)
    identity = int((betas == 0).nonzero())
    assert length[1, identity] == 20  # alpha 1, beta 0: the diagonal
    with pytest.raises(ValueError, match="votes"):
        HoughPairing(votes="max")
    with pytest.raises(ValueError, match="min_overlap"):
        HoughPairing(min_overlap=0)


def test_line_strength_is_the_mean_match_along_the_rounded_line_inside_view_two():
    gen = torch.Generator().manual_seed(0)
    strength = torch.rand(3, 12, 10, generator=gen)
    alpha, beta = torch.tensor([1.0, 0.8, 1.25]), torch.tensor([-2.0, 1.4, 0.3])
    got = line_strength(strength, alpha, beta)
    for b in range(3):
        values = [
            strength[b, t, round(alpha[b].item() * t + beta[b].item())].item()
            for t in range(12)
            if 0 <= round(alpha[b].item() * t + beta[b].item()) < 10
        ]
        assert got[b].item() == pytest.approx(sum(values) / len(values), rel=1e-6)
    assert line_strength(strength[:1], torch.tensor([1.0]), torch.tensor([50.0])).item() == -1.0


def test_the_refit_is_kept_only_where_it_matches_at_least_as_strongly_as_the_mode():
    for seed in range(10):
        gen = torch.Generator().manual_seed(seed)
        track = smooth_features(gen)
        frames = torch.arange(T, dtype=torch.float32)
        u1, u2 = track(frames + 20), track((frames + 2.5) / 1.1 + 20)
        pairing = HoughPairing(scales=(0.8, 1.0, 1.25))
        result = pairing(u1[None], u2[None])
        centred1, centred2 = (u - u.mean(dim=1, keepdim=True) for u in (u1[None], u2[None]))
        strength = match_strength(centred1, centred2, pairing.permutations(V, u1.device))[:, result.perm.item()]
        kept = line_strength(strength, result.alpha, result.beta)
        mode = line_strength(strength, result.mode_alpha, result.mode_beta)
        assert kept.item() >= mode.item() - 1e-6


def padded_views(offsets, gen):
    """Frame tokens of reflect-padded crops (as TemporalCrop: pad T // 6 mirrored frames each side,
    edge frame included) of one clip with distinct random frames; offsets in padded frames."""
    pad = T // 6
    mirror = torch.cat([torch.arange(pad - 1, -1, -1), torch.arange(T), torch.arange(T - 1, T - 1 - pad, -1)])
    source = torch.randn(C, T, V, generator=gen)
    return torch.stack([source[:, mirror[o : o + T]] for o in offsets])


@pytest.mark.parametrize("seed", range(4))
def test_reflect_padded_crops_give_the_exact_offset_where_winner_takes_all_fails(seed):
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 2 * (T // 6) + 1, (2, 3), generator=gen)
    offsets[:, 0] = torch.tensor([0, 0])  # identical crops: every mirrored frame has two copies
    u1 = torch.stack([padded_views(offsets[:, b], gen)[0] for b in range(3)])
    gen = torch.Generator().manual_seed(seed)
    torch.randint(0, 2 * (T // 6) + 1, (2, 3), generator=gen)
    u2 = torch.stack([padded_views(offsets[:, b], gen)[1] for b in range(3)])
    params = [{"temporal_crop": {"offset": offsets[i]}} for i in range(2)]
    oracle = oracle_pairs(params[0], params[1], T, T)
    result = HoughPairing()(u1, u2)
    torch.testing.assert_close(torch.round(result.beta), (offsets[0] - offsets[1]).float())
    assert torch.equal(result.pairs, oracle)
    wta = winner_take_all_pairs(u1, u2)
    valid = oracle >= 0
    assert ((wta != oracle) & valid).any()


def test_a_flipped_view_selects_the_left_right_permutation():
    gen = torch.Generator().manual_seed(0)
    track = smooth_features(gen)
    frames = torch.arange(T, dtype=torch.float32)
    u1 = torch.stack([track(frames), track(frames)])
    u2 = torch.stack([track(frames + 3), track(frames + 3)[..., list(NTU_FLIP_ORDER)]])
    result = HoughPairing()(u1, u2)
    assert result.perm.tolist() == [0, 1]
    assert torch.round(result.beta).tolist() == [-3.0, -3.0]


def test_pairing_adds_no_learnable_parameter_and_no_gradient_path():
    pairing = HoughPairing()
    assert list(pairing.parameters()) == [] and list(pairing.buffers()) == []
    objective = HoughDenseHiCLR(feature_dim=64)
    assert all(name.startswith("dense_head.") for name, _ in objective.named_parameters())
    u = torch.randn(2, C, T, V, requires_grad=True)
    result = pairing(u, u)
    assert not result.pairs.requires_grad and not result.beta.requires_grad


def policy_views(seed, batch=8):
    """Views v0 and v1 of a policy with crops, flips and per-sample joint masks, recorded."""
    stages = [
        [{"name": "temporal_crop", "padding_ratio": 6}],
        [{"name": "spatial_flip", "p": 0.5}, {"name": "joint_mask", "ratio": 0.1, "per_sample": True}],
    ]
    policy = GrowingPolicy.from_config(stages, record=True)
    frame_ids = torch.arange(T, dtype=torch.float32)[None, None, :, None, None].expand(batch, 3, T, V, 2)
    views = policy.views(frame_ids.contiguous(), torch.Generator().manual_seed(seed), [0, 1])
    return views


def test_hough_pairing_agrees_with_the_oracle_on_unmasked_tokens():
    agree = total = 0
    for seed in range(3):
        views = policy_views(seed)
        gen = torch.Generator().manual_seed(100 + seed)
        track = smooth_features(gen)
        source = track(torch.arange(T, dtype=torch.float32))  # (C, T, V)
        tokens = []
        for view in views:  # features of the frames and joints each view shows (crop, flip)
            frame = view.x[:, 0, :, 0, 0].long()  # (B, T) source frames
            order = torch.where(
                view.params.get("spatial_flip", {}).get("flipped", torch.zeros(8, dtype=torch.bool))[:, None],
                torch.tensor(NTU_FLIP_ORDER),
                torch.arange(V),
            )
            u = source[:, frame].permute(1, 0, 2, 3)  # (B, C, T, V)
            u = torch.gather(u, 3, order[:, None, None, :].expand_as(u))
            tokens.append(u + 0.05 * torch.randn(u.shape, generator=gen))
        masked = torch.zeros(8, T, dtype=torch.bool)
        masked[:, 10:13] = True  # fully masked frames of view 1
        result = HoughPairing()(tokens[0], tokens[1], masked)
        oracle = drop_invalid_pairs(oracle_pairs(views[0].params, views[1].params, T, T), T, masked)
        assert (result.pairs[:, 10:13] == -1).all()
        assert (result.perm == views[1].params["spatial_flip"]["flipped"].long()).all()
        counted = oracle >= 0
        agree += int(((result.pairs == oracle) & counted).sum())
        total += int(counted.sum())
    assert agree >= 0.95 * total


def test_oracle_pairs_follow_the_crop_offsets_and_drop_frames_outside():
    params1 = {"temporal_crop": {"offset": torch.tensor([3, 0])}}
    params2 = {"temporal_crop": {"offset": torch.tensor([1, 5])}}
    pairs = oracle_pairs(params1, params2, 10, 10)
    assert pairs[0].tolist() == [2, 3, 4, 5, 6, 7, 8, 9, -1, -1]
    assert pairs[1].tolist() == [-1, -1, -1, -1, -1, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("pairing", ["hough", "oracle"])
def test_a_learner_step_with_dense_pairs(pairing):
    from hiclr.models.stgcn import STGCN

    policy = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml", record=True)
    learner = ContrastiveLearner(
        lambda: STGCN(width=4, dropout=0.0),
        "hough_dense",
        dim=8,
        hidden=16,
        queue_size=8,
        pairing=pairing,
        dense_dim=16,
    )
    x = torch.randn(4, 3, T, V, 2, generator=torch.Generator().manual_seed(0)).cumsum(2) * 0.1
    views = policy.views(x, torch.Generator().manual_seed(1), learner.view_stages)
    loss, metrics = learner(views, torch.arange(4))
    assert torch.isfinite(loss) and {"loss_dense", "pair_agreement", "paired_tokens"} <= set(metrics)
    loss.backward()
    assert learner.objective.dense_head[0].weight.grad.abs().sum() > 0
    assert learner.encoder_q.backbone.st_gcn_networks[0].gcn.conv.weight.grad.abs().sum() > 0


def test_with_lambda_zero_the_loss_is_hiclrs():
    from hiclr.models.stgcn import STGCN

    policy = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml", record=True)
    x = torch.randn(4, 3, T, V, 2, generator=torch.Generator().manual_seed(0))
    losses = []
    for objective, extra in (("hough_dense", {"lambda_dense": 0.0}), ("hiclr", {})):
        torch.manual_seed(0)
        learner = ContrastiveLearner(
            lambda: STGCN(width=2, dropout=0.0), objective, dim=8, hidden=16, queue_size=8, **extra
        )
        views = policy.views(x, torch.Generator().manual_seed(1), learner.view_stages)
        losses.append(learner(views, torch.arange(4))[0])
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)


def test_the_dense_loss_is_the_mean_over_paired_tokens_and_zero_with_none():
    gen = torch.Generator().manual_seed(0)
    q1 = torch.nn.functional.normalize(torch.randn(3, 16, 12, generator=gen), dim=1).requires_grad_()
    q2 = torch.nn.functional.normalize(torch.randn(3, 16, 10, generator=gen), dim=1).requires_grad_()
    pairs = torch.randint(-1, 10, (3, 12), generator=gen)
    objective = HoughDenseHiCLR(feature_dim=32, negative_stride=3)
    per_token = []
    for n, t in (pairs >= 0).nonzero().tolist():  # one paired token at a time
        negatives = torch.cat([q2[m, :, ::3] for m in range(3) if m != n], dim=1)
        logits = torch.cat([(q1[n, :, t] @ q2[n, :, pairs[n, t]])[None], q1[n, :, t] @ negatives])
        per_token.append(-torch.log_softmax(logits / objective.dense_temperature, 0)[0])
    torch.testing.assert_close(objective.dense_nce(q1, q2, pairs), torch.stack(per_token).mean())
    none = objective.dense_nce(q1, q2, torch.full_like(pairs, -1))
    none.backward()
    assert none == 0 and not q1.grad.any() and not q2.grad.any()


def test_votes_and_the_dense_loss_under_bf16_autocast_equal_the_float32_computation():
    gen = torch.Generator().manual_seed(0)
    u1, u2 = torch.randn(2, 8, 12, 5, generator=gen).bfloat16(), torch.randn(2, 8, 10, 5, generator=gen).bfloat16()
    perms = torch.stack([torch.arange(5), torch.tensor([1, 0, 2, 4, 3])])
    q1 = torch.nn.functional.normalize(torch.randn(3, 16, 12, generator=gen), dim=1).bfloat16()
    q2 = torch.nn.functional.normalize(torch.randn(3, 16, 10, generator=gen), dim=1).bfloat16()
    pairs = torch.randint(-1, 10, (3, 12), generator=gen)
    objective = HoughDenseHiCLR(feature_dim=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        strength = match_strength(u1, u2, perms)
        loss = objective.dense_nce(q1, q2, pairs)
    assert strength.dtype == loss.dtype == torch.float32
    torch.testing.assert_close(strength, match_strength(u1.float(), u2.float(), perms), rtol=0, atol=1e-4)
    torch.testing.assert_close(loss, objective.dense_nce(q1.float(), q2.float(), pairs), rtol=0, atol=1e-4)
