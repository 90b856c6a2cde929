"""Behaviour of a pre-training step (hiclr.pretrain.PretrainTask.step, then backward, gradient
clipping and the optimizer step, as the engine runs them): no operation makes the host wait for
the device.

On CUDA such an operation (an output whose shape depends on the data, a value read on the host,
a tensor made from Python data and copied over) drains the device's queue, so the kernels of a
step cannot be queued ahead. Here they are counted on the CPU, by dispatch mode, over steps 2-3
(step 1 may build constants once), for every stream, both ways of building views, both ways of
encoding the query views, before and after mining, and every shipped augmentation policy; and for
the variant objectives (transitive, hough_dense, equivariant) with their options.
"""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hiclr.config import load_config
from hiclr.engine import Batch
from hiclr.engine.schedule import build_optimizer, build_scheduler
from hiclr.pretrain import PretrainTask, build_learner, build_policy
from tests.helpers.paths import ROOT_DIR

ROOT = ROOT_DIR
TINY = ROOT / "configs" / "tiny" / "pretrain.yaml"
POLICIES = sorted(path.stem for path in (ROOT / "configs" / "augment").glob("*.yaml"))
STREAMS = ("joint", "motion", "bone")
FUSED = ("separate", "per_view", "shared")  # ssl.fused_views
B, T = 8, 20  # clips per batch, frames per clip

# ops that read a device value on the host, give a shape that depends on the data, or make a tensor
# from Python data (which a step on CUDA would then copy over)
SYNC_OPS = {
    "nonzero",
    "_local_scalar_dense",
    "item",
    "is_nonzero",
    "equal",
    "masked_select",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "unique_dim_consecutive",
    "lift_fresh",
    "lift_fresh_copy",
}
INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}


def sync_reason(func, args, kwargs) -> str | None:
    """Why ``func`` called with ``args`` would wait for the device (None: it would not)."""
    name = func.overloadpacket.__name__
    if name in SYNC_OPS:
        return name
    if name in INDEXING and any(i is not None and i.dtype == torch.bool for i in args[1]):
        return f"{name} with a bool index"
    if name == "repeat_interleave" and func._overloadname != "self_int" and kwargs.get("output_size") is None:
        return "repeat_interleave of tensor repeats without output_size"
    return None


def _caller() -> str:
    """The innermost frames of this repository that led to the current op."""
    frames = [f for f in traceback.extract_stack()[:-3] if f.filename.startswith(str(ROOT))]
    return " <- ".join(f"{Path(f.filename).relative_to(ROOT)}:{f.lineno} {f.name}" for f in frames[::-1][:3])


class SyncCounter(TorchDispatchMode):
    """Counts, while active, every dispatched op that would make the host wait for the device,
    by (reason, where it was called from)."""

    def __init__(self):
        super().__init__()
        self.found: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reason = sync_reason(func, args, kwargs)
        if reason is not None:
            self.found[(reason, _caller())] += 1
        return func(*args, **kwargs)

    def report(self) -> str:
        return "\n".join(f"{count} x {reason} at {where}" for (reason, where), count in self.found.items())


def engine_steps(
    overrides: list[str],
    policy: str = "hiclr_default",
    mining: bool = False,
    config: Path = TINY,
    revisit: int | None = None,
):
    """A function running the engine's training step (views, loss, backward, clipping, optimizer
    and schedule) on the next batch: the pre-training config ``config`` (the tiny one) with
    ``overrides`` and the stages of ``configs/augment/<policy>.yaml``; the epoch is before or after
    the mining epoch. ``revisit``: sample ids cycle every ``revisit`` batches (so the queue holds
    older keys of a batch's samples), else every batch has new ids."""
    cfg = load_config(config, [*overrides, "optim.grad_clip=1.0"])
    shipped = load_config(ROOT / "configs" / "augment" / f"{policy}.yaml")["augment"]
    cfg["augment"].update(stages=shipped["stages"], reference_quirks=shipped["reference_quirks"])
    torch.manual_seed(0)
    learner = build_learner(cfg)
    policy_ = build_policy(cfg, record=bool(getattr(learner.objective, "needs_view_params", False)))
    task = PretrainTask(learner, policy_, cfg["model"], cfg["data"]["stream"])
    optim = cfg["optim"]
    optimizer = build_optimizer([p for p in learner.parameters() if p.requires_grad], optim)
    scheduler = build_scheduler(optimizer, optim, steps_per_epoch=4)
    epoch = int(cfg["ssl"]["mining_epoch"]) + 10 if mining else 0
    generator = torch.Generator().manual_seed(1)
    data = torch.Generator().manual_seed(2)
    learner.train()
    done = []

    def step():
        ids = torch.arange(B) + (len(done) if revisit is None else len(done) % revisit) * B
        batch = Batch(torch.randn(B, 3, T, 25, 2, generator=data), torch.zeros(B, dtype=torch.long), ids)
        loss, metrics = task.step(learner, batch, generator, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(learner.parameters(), float(optim["grad_clip"]))
        optimizer.step()
        scheduler.step()
        done.append(loss.detach())

    return step


def count_syncs(step) -> SyncCounter:
    """Runs ``step`` once unmeasured, then twice counting."""
    step()
    counter = SyncCounter()
    with counter:
        step()
        step()
    return counter


def test_the_counter_sees_what_makes_the_host_wait():
    x = torch.randn(6)
    counter = SyncCounter()
    with counter:
        x[x > 0]
        torch.nonzero(x)
        x.sum().item()
        torch.unique(x)
        torch.equal(x, x)
        torch.as_tensor((1, 2, 3))
        x.repeat_interleave(torch.tensor([1, 2, 1, 1, 1, 1], dtype=torch.long))
        x.repeat_interleave(2)  # int repeats: the output size is known
        torch.where(x > 0, x, 0.0)  # a mask used as such
    reasons = Counter(reason for reason, _ in counter.found.elements())
    assert reasons["index with a bool index"] == 1
    assert reasons["nonzero"] == 1
    assert reasons["_local_scalar_dense"] == 1
    assert reasons["_unique2"] == 1 and reasons["equal"] == 1
    assert reasons["lift_fresh"] == 2  # the tuple, and the tensor of repeats
    assert reasons["repeat_interleave of tensor repeats without output_size"] == 1
    assert sum(reasons.values()) == 8
    assert "tests/hiclr/test_step_sync.py" in next(iter(counter.found))[1]


def _cases():
    """Every policy x stream x view building x query encoding x epoch; the default run takes one
    case per policy, varying the rest so that every value occurs, and the others are marked slow."""
    cases = []
    for i, policy in enumerate(POLICIES):
        covering = (STREAMS[i % 3], i % 2 == 0, FUSED[i // 2 % 2], i >= len(POLICIES) // 2)
        for stream in STREAMS:
            for planned in (True, False):
                for fused in FUSED:
                    for mining in (False, True):
                        case = (stream, planned, fused, mining)
                        name = "-".join(
                            [
                                policy,
                                stream,
                                "planned" if planned else "plain",
                                fused,
                                "mining" if mining else "before_mining",
                            ]
                        )
                        marks = () if case == covering else pytest.mark.slow
                        cases.append(pytest.param(policy, *case, id=name, marks=marks))
    return cases


@pytest.mark.parametrize("policy, stream, planned, fused, mining", _cases())
def test_a_training_step_never_waits_for_the_device(policy, stream, planned, fused, mining):
    """``planned``: views concatenated and linear maps fused (the policy's planned path), else one
    view at a time, op by op; ``fused``: the learner's ``ssl.fused_views``."""
    switch = str(planned).lower()
    overrides = [
        f"data.stream={stream}",
        f"ssl.fused_views={fused}",
        f"augment.concat_views={switch}",
        f"augment.fuse_linear={switch}",
    ]
    counter = count_syncs(engine_steps(overrides, policy, mining))
    assert not counter.found, f"host syncs in steps 2-3:\n{counter.report()}"


def test_the_transformer_step_with_every_strong_augmentation_never_waits_for_the_device():
    """DSTA-Net takes Drop/Add edges with its release default, which also adds edges."""
    small = "model.blocks=[[3, 8, 4, 1], [8, 8, 4, 2]]"
    counter = count_syncs(engine_steps(["model.name=dsta", small], "strong_all", mining=True))
    assert not counter.found, f"host syncs in steps 2-3:\n{counter.report()}"


VARIANTS = ("transitive", "hough_dense", "equivariant", "skeletonclr")


@pytest.mark.parametrize("mining", (False, True), ids=("before_mining", "mining"))
@pytest.mark.parametrize("objective", VARIANTS)
def test_a_variant_objective_step_never_waits_for_the_device(objective, mining):
    """The variant objectives as configs/variants/tiny_<objective>.yaml sets them (skeletonclr: the
    tiny config with that objective); the sample ids come back every other batch, so the queue
    holds older keys of the batch's own samples."""
    config = ROOT / "configs" / "variants" / f"tiny_{objective}.yaml"
    overrides = [] if config.exists() else [f"ssl.objective={objective}"]
    config = config if config.exists() else TINY
    counter = count_syncs(engine_steps(overrides, "hiclr_default", mining, config=config, revisit=2))
    assert not counter.found, f"host syncs in steps 2-3:\n{counter.report()}"


VARIANT_OPTIONS = {  # name: (objective, overrides of its tiny config)
    "query_topk_edges": ("transitive", ["ssl.options.edges=query_topk", "ssl.options.intra_hop=false"]),
    "knn_every_queue_source": (
        "transitive",
        ["ssl.options.mutual=false", "ssl.options.k=2", "ssl.options.queue_sources=null"],
    ),
    "key_votes_lambda_by_agreement": (
        "hough_dense",
        ["ssl.options.vote_with=key", "ssl.options.lambda_by_agreement=true"],
    ),
    "input_votes_min_confidence": (
        "hough_dense",
        ["ssl.options.vote_with=input", "augment.record=true", "ssl.options.min_confidence=0.8"],
    ),
    "neighbour_pairs_warmup": (
        "hough_dense",
        ["ssl.options.pair_with=neighbour", "ssl.options.vote_with=input", "ssl.options.dense_warmup_epochs=100"],
    ),
    "oracle_pairs": ("hough_dense", ["ssl.options.pairing=oracle"]),
    "three_branches": ("equivariant", ["ssl.options.eq_branches=[0, 1, 2]"]),
}


@pytest.mark.parametrize("mining", (False, True), ids=("before_mining", "mining"))
@pytest.mark.parametrize("name", VARIANT_OPTIONS)
def test_a_variant_objective_step_with_its_options_never_waits_for_the_device(name, mining):
    """The variants' other edges, vote sources, pairings, weightings and branches."""
    objective, overrides = VARIANT_OPTIONS[name]
    config = ROOT / "configs" / "variants" / f"tiny_{objective}.yaml"
    counter = count_syncs(engine_steps(overrides, "hiclr_default", mining, config=config, revisit=2))
    assert not counter.found, f"host syncs in steps 2-3:\n{counter.report()}"
