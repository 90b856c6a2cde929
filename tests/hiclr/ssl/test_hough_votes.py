"""Options of the hough_dense objective for getting the votes right early (vote_with, the dense
warm-up and lambda by agreement, min_confidence, pair_with: neighbour); at the defaults the step is
the plain dense objective without options, to the bit, for the same pairs."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from hiclr.augment import GrowingPolicy
from hiclr.config import load_config
from hiclr.models.stgcn import STGCN
from hiclr.ssl import ContrastiveLearner
from hiclr.ssl.hough import HoughDenseHiCLR, HoughPairing, nearest_other_sample, pair_confidence, view_coordinates
from hiclr.ssl.learner import ContrastiveInputs
from tests.hiclr.ssl.test_hough import smooth_features

C, T, V, M, N = 16, 50, 25, 2, 4


# ------------------------------------------------------------------------- hand-made step inputs
def track_block(tracks, offsets):
    """Block features (N, M, C, T, V): sample n shows its track at frames t + offsets[n]."""
    frames = torch.arange(T, dtype=torch.float32)
    return (
        torch.stack([track(frames + float(o)) for track, o in zip(tracks, offsets)])[:, None]
        .expand(-1, M, -1, -1, -1)
        .contiguous()
    )


def step_inputs(query_offsets, key_offsets=None, recorded_offsets=None, switches=None, seed=0, keys=None):
    """ContrastiveInputs of one step whose query views 0 and 1 show each sample's feature track at
    offsets query_offsets = (offsets of view 0, offsets of view 1), the key encoder's blocks at
    key_offsets (None: no key blocks), the views recording crops recorded_offsets (None: none)."""
    gen = torch.Generator().manual_seed(seed)
    tracks = [smooth_features(gen) for _ in range(N)]
    blocks = [track_block(tracks, offsets) for offsets in query_offsets]
    blocks.append(torch.randn(N, M, C, T, V, generator=gen))
    key_blocks = {} if key_offsets is None else {i: track_block(tracks, o) for i, o in enumerate(key_offsets)}
    params = (
        [{} for _ in range(3)]
        if recorded_offsets is None
        else [{"temporal_crop": {"offset": torch.tensor(o)}} for o in recorded_offsets] + [{}]
    )
    query_views = [SimpleNamespace(mask=None, params=p) for p in params]
    views = [query_views[0], SimpleNamespace(mask=None, params={}), *query_views[1:]]
    unit = lambda *shape: F.normalize(torch.randn(*shape, generator=gen), dim=1)  # noqa: E731
    inputs = ContrastiveInputs(
        queries=[unit(N, 8).requires_grad_() for _ in range(3)],
        key=unit(N, 8) if keys is None else keys,
        queue_keys=unit(6, 8),
        queue_ids=torch.arange(10, 16),
        ids=torch.arange(N),
        **(switches or {}),
        views=views,
        query_blocks=[b.requires_grad_() for b in blocks],
        key_blocks=key_blocks,
    )
    return inputs, tracks


def objective(**options):
    torch.manual_seed(0)
    return HoughDenseHiCLR(block_channels=C, dense_dim=16, **options)


# ------------------------------------------------------------------------------------ defaults
def forward_without_options(self, inputs):
    """The objective's forward without options: the reference for the defaults."""
    loss_hiclr, metrics = self.hiclr(inputs)
    block1, block2 = inputs.query_blocks[0], inputs.query_blocks[1]
    with torch.no_grad():
        pairs = self.pairing(block1.detach().mean(dim=1), block2.detach().mean(dim=1)).pairs
    q1, q2 = self.tokens(block1), self.tokens(block2)
    n, _, t1 = q1.shape
    valid = pairs >= 0
    anchors = q1.permute(0, 2, 1)[valid].float()
    sample = torch.arange(n)[:, None].expand(n, t1)[valid]
    partner = q2.permute(0, 2, 1)[sample, pairs[valid]].float()
    negatives = q2[:, :, :: self.negative_stride].permute(0, 2, 1)
    owner = torch.arange(n)[:, None].expand(negatives.shape[:2]).reshape(-1)
    neg_logits = (anchors @ negatives.reshape(-1, negatives.shape[-1]).float().T).masked_fill(
        owner[None, :] == sample[:, None], float("-inf")
    )
    logits = torch.cat([(anchors * partner).sum(1, keepdim=True), neg_logits], 1)
    loss_dense = -F.log_softmax(logits / self.dense_temperature, dim=1)[:, 0].mean()
    return (1 - self.lambda_dense) * loss_hiclr + self.lambda_dense * loss_dense, metrics


def learner_step(seed_views=1, forward=None, key_calls=None, **options):
    """One learner step (ST-GCN width 4, batch 4) from fixed seeds: (loss, metrics, learner);
    `forward` replaces the objective's, `key_calls` counts the key backbone's forward passes."""
    policy = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml")
    torch.manual_seed(0)
    learner = ContrastiveLearner(
        lambda: STGCN(width=4, dropout=0.0), "hough_dense", dim=8, hidden=16, queue_size=8, dense_dim=16, **options
    )
    if forward is not None:
        learner.objective.forward = forward.__get__(learner.objective)
    if key_calls is not None:
        learner.encoder_k.backbone.forward_features = _counted(learner.encoder_k.backbone.forward_features, key_calls)
    x = torch.randn(4, 3, T, V, 2, generator=torch.Generator().manual_seed(0)).cumsum(2) * 0.1
    views = policy.views(x, torch.Generator().manual_seed(seed_views), learner.view_stages)
    loss, metrics = learner(views, torch.arange(4))
    loss.backward()
    return loss, metrics, learner


def _counted(function, calls):
    def wrapped(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)

    return wrapped


def test_the_default_step_has_the_loss_and_gradients_of_the_objective_without_options_to_the_bit():
    loss, _, learner = learner_step()
    reference_loss, _, reference = learner_step(forward=forward_without_options)
    assert torch.equal(loss, reference_loss)
    grads = {n: p.grad for n, p in learner.named_parameters() if p.grad is not None}
    reference_grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert grads.keys() == reference_grads.keys() and len(grads) > 10
    assert all(torch.equal(grads[n], reference_grads[n]) for n in grads)


def test_by_default_the_key_encoder_runs_once_per_step_and_no_key_blocks_are_made():
    calls = []
    learner_step(key_calls=calls)
    assert len(calls) == 1
    calls = []
    learner_step(key_calls=calls, vote_with="key")
    assert len(calls) == 3  # the key view, then the two dense views
    calls = []
    learner_step(key_calls=calls, vote_with="input")
    assert len(calls) == 1


# ------------------------------------------------------------------------------------ vote_with
def test_vote_with_key_pairs_by_the_key_encoders_features():
    # the query blocks say view 1 runs 3 frames behind, the key blocks (and the recorded crops) ahead
    inputs, _ = step_inputs(
        query_offsets=([0] * N, [3] * N), key_offsets=([3] * N, [0] * N), recorded_offsets=([3] * N, [0] * N)
    )
    _, by_key = objective(vote_with="key")(inputs)
    _, by_query = objective()(inputs)
    assert by_key["pair_agreement"] > 0.95
    assert by_query["pair_agreement"] < 0.05


def test_vote_with_input_pairs_by_the_views_coordinates():
    inputs, tracks = step_inputs(query_offsets=([0] * N, [3] * N), recorded_offsets=([3] * N, [0] * N))
    for k, offsets in ((0, [3] * N), (2, [0] * N)):  # views v0 and v1 (the key view sits at 1)
        coords = track_block([lambda pos, tr=tr: tr(pos)[:3] for tr in tracks], offsets)
        inputs.views[k].x = rearrange(coords, "n m c t v -> n c t v m")
    _, by_input = objective(vote_with="input")(inputs)
    _, by_query = objective()(inputs)
    assert by_input["pair_agreement"] > 0.95 and by_query["pair_agreement"] < 0.05


def test_the_coordinates_voted_on_have_their_masked_entries_zeroed():
    x = torch.randn(2, 3, T, V, M)
    mask = torch.zeros(2, 1, T, V, 1, dtype=torch.bool)
    mask[:, :, :, :2] = True
    coords = view_coordinates(SimpleNamespace(x=x, mask=mask), T)
    assert coords.shape == (2, M, 3, T, V)
    shown = rearrange(x, "n c t v m -> n m c t v")
    assert (coords[..., :2] == 0).all() and torch.equal(coords[..., 2:], shown[..., 2:])
    with pytest.raises(ValueError, match="stride 1"):
        view_coordinates(SimpleNamespace(x=x, mask=None), T // 2)


def test_vote_with_key_without_key_blocks_is_a_clear_error():
    inputs, _ = step_inputs(query_offsets=([0] * N, [3] * N))
    with pytest.raises(ValueError, match="key_blocks"):
        objective(vote_with="key")(inputs)


def test_a_learner_voting_with_key_features_trains_and_leaves_the_key_encoders_statistics_alone():
    loss, metrics, learner = learner_step(vote_with="key")
    _, _, default = learner_step()
    assert torch.isfinite(loss) and "vote_confidence" in metrics
    assert learner.encoder_q.backbone.st_gcn_networks[0].gcn.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in learner.encoder_k.parameters())
    reference = dict(default.encoder_k.named_buffers())
    for name, buffer in learner.encoder_k.named_buffers():
        assert torch.equal(buffer, reference[name]), name


# -------------------------------------------------------------------- warm-up, lambda by agreement
def test_before_the_warm_up_ends_the_loss_is_hiclrs_alone_and_the_agreement_is_still_logged():
    shifted = dict(query_offsets=([2] * N, [0] * N), recorded_offsets=([2] * N, [0] * N))
    warm = objective(dense_warmup_epochs=2)
    inputs, _ = step_inputs(**shifted, switches=warm.switches(1))  # 0-based epoch 1 < 2
    loss, metrics = warm(inputs)
    assert torch.equal(loss, metrics["loss_hiclr"]) and metrics["lambda_dense"] == 0
    assert metrics["pair_agreement"] > 0.95
    loss.backward()
    assert warm.dense_head[0].weight.grad.abs().sum() == 0
    inputs, _ = step_inputs(**shifted, switches=warm.switches(2))
    loss, metrics = warm(inputs)
    assert metrics["lambda_dense"] == 0.5
    torch.testing.assert_close(loss, 0.5 * metrics["loss_hiclr"] + 0.5 * metrics["loss_dense"])
    assert loss != metrics["loss_hiclr"]


def test_lambda_by_agreement_scales_lambda_by_the_measured_agreement_or_else_the_confidence():
    # half the samples' view 1 at the recorded offset, half 5 frames off: agreement about a half
    inputs, _ = step_inputs(query_offsets=([2] * N, [0, 0, 5, 5]), recorded_offsets=([2] * N, [0] * N))
    loss, metrics = objective(lambda_by_agreement=True)(inputs)
    assert 0.3 < metrics["pair_agreement"] < 0.7
    weight = 0.5 * metrics["pair_agreement"]
    torch.testing.assert_close(metrics["lambda_dense"], weight)
    torch.testing.assert_close(loss, (1 - weight) * metrics["loss_hiclr"] + weight * metrics["loss_dense"])
    inputs, _ = step_inputs(query_offsets=([2] * N, [0, 0, 5, 5]))  # no recorded crops
    loss, metrics = objective(lambda_by_agreement=True)(inputs)
    assert "pair_agreement" not in metrics
    torch.testing.assert_close(metrics["lambda_dense"], 0.5 * metrics["vote_confidence"])


# ------------------------------------------------------------------------------ min_confidence
def test_pair_confidence_is_the_paired_frames_strength_over_the_rows_peak():
    strength = torch.tensor([[[0.0, 2.0, 4.0], [1.0, 1.0, 0.5], [0.0, 0.0, 0.0]]])
    pairs = torch.tensor([[1, 0, 2]])
    assert pair_confidence(strength, pairs).tolist() == [[0.5, 1.0, 0.0]]
    assert pair_confidence(strength, torch.tensor([[-1, 1, -1]])).tolist() == [[0.0, 1.0, 0.0]]


def test_min_confidence_drops_the_low_confidence_tokens_and_logs_the_kept_share():
    inputs, _ = step_inputs(query_offsets=([2] * N, [0] * N), recorded_offsets=([2] * N, [0] * N))
    noise = torch.Generator().manual_seed(7)
    with torch.no_grad():  # two samples' view 1 is noise: nothing to match, low confidence
        inputs.query_blocks[1][2:] = torch.randn(2, M, C, T, V, generator=noise)
    hough = HoughPairing()(inputs.query_blocks[0].detach().mean(1), inputs.query_blocks[1].detach().mean(1))
    kept = (hough.pairs >= 0) & (hough.confidence >= 0.9)
    assert kept[:2].float().mean() > 0.9 and kept[2:].float().mean() < 0.5

    filtering = objective(min_confidence=0.9)
    loss, metrics = filtering(inputs)
    torch.testing.assert_close(metrics["dense_kept"], kept.sum() / (hough.pairs >= 0).sum())
    assert metrics["kept_agreement"] > metrics["pair_agreement"]
    q1, q2 = filtering.tokens(inputs.query_blocks[0]), filtering.tokens(inputs.query_blocks[1])
    expected = filtering.dense_nce(q1, q2, torch.where(kept, hough.pairs, -1))
    torch.testing.assert_close(metrics["loss_dense"], expected.detach())
    assert metrics["loss_dense"] != objective()(inputs)[1]["loss_dense"]


def test_min_confidence_out_of_range_or_with_oracle_pairing_is_refused():
    with pytest.raises(ValueError, match="min_confidence"):
        objective(min_confidence=1.5)
    with pytest.raises(ValueError, match="min_confidence"):
        objective(min_confidence=0.5, pairing="oracle")


# ------------------------------------------------------------------------------- pair_with
def test_the_nearest_other_sample_is_never_the_sample_itself_nor_its_id():
    keys = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [1.0, 0.0]]), dim=1)
    assert nearest_other_sample(keys[:4], torch.arange(4)).tolist() == [2, 3, 0, 1]
    # rows 0 and 4 hold one sample id (the same clip twice): still not each other's neighbour
    assert nearest_other_sample(keys, torch.tensor([0, 1, 2, 3, 0])).tolist() == [2, 3, 0, 1, 2]
    assert nearest_other_sample(keys[:1], torch.arange(1)).tolist() == [-1]


def test_pair_with_neighbour_pairs_view_1_with_view_2_of_the_nearest_other_sample():
    keys = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]]), dim=1)
    inputs, tracks = step_inputs(query_offsets=([0] * N, [0] * N), keys=F.pad(keys, (0, 6)))
    partners = torch.tensor([2, 3, 0, 1])
    with torch.no_grad():  # view 1 of each sample shows its neighbour's clip 4 frames earlier
        inputs.query_blocks[1].copy_(track_block([tracks[p] for p in partners.argsort()], [4] * N))
    neighbour = objective(pair_with="neighbour")
    loss, metrics = neighbour(inputs)
    hough = HoughPairing()(inputs.query_blocks[0].detach().mean(1), inputs.query_blocks[1].detach().mean(1)[partners])
    assert torch.round(hough.beta).tolist() == [-4.0] * N
    q1, q2 = neighbour.tokens(inputs.query_blocks[0]), neighbour.tokens(inputs.query_blocks[1])
    expected = neighbour.dense_nce(q1, q2, hough.pairs, partners)
    torch.testing.assert_close(metrics["loss_dense"], expected.detach())
    assert "pair_agreement" not in metrics and metrics["vote_confidence"] > 0.9
    assert metrics["loss_dense"] != objective()(inputs)[1]["loss_dense"]


def test_pair_with_neighbour_leaves_the_anchors_and_the_neighbours_tokens_out_of_the_negatives():
    dense = objective()
    q = F.normalize(torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    pairs = torch.tensor([[0, -1, -1, -1], [-1] * 4, [-1] * 4])
    partners = torch.tensor([1, 0, 0])
    anchor, positive = q[0, :, 0], q[1, :, 0]
    negatives = q[2, :, ::4].T  # only sample 2 is neither the anchor nor its partner
    logits = torch.cat([(anchor @ positive)[None], negatives @ anchor]) / dense.dense_temperature
    torch.testing.assert_close(dense.dense_nce(q, q, pairs, partners), -F.log_softmax(logits, 0)[0])


def test_pair_with_neighbour_refuses_the_oracle_pairing_and_unknown_modes():
    with pytest.raises(ValueError, match="no exact"):
        objective(pair_with="neighbour", pairing="oracle")
    with pytest.raises(ValueError, match="pair_with"):
        objective(pair_with="neighbor")
    with pytest.raises(ValueError, match="vote_with"):
        objective(vote_with="momentum")


# ---------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "hough_dense",
            {
                "vote_with": "query",
                "dense_warmup_epochs": 0,
                "lambda_by_agreement": False,
                "min_confidence": 0.0,
                "pair_with": "view",
            },
        ),
        ("hough_dense_votes", {"vote_with": "input", "min_confidence": 0.8, "pair_with": "view"}),
        ("hough_dense_neighbour", {"pair_with": "neighbour", "vote_with": "input"}),
    ],
)
def test_the_variant_configs_build_the_objective_with_their_options(name, expected):
    cfg = load_config(f"configs/variants/{name}.yaml", ["model.width=2"])
    learner = ContrastiveLearner.from_config(cfg)
    assert isinstance(learner.objective, HoughDenseHiCLR)
    for key, value in expected.items():
        assert getattr(learner.objective, key) == value
