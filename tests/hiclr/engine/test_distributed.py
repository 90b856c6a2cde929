"""The engine under DDP (2 gloo ranks on CPU; 3 in a slow test): equal batches on every rank, stop
agreement at log points only, each rank's random streams saved and restored, BatchNorm statistics
over all ranks."""

import contextlib
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from hiclr.common.errors import UserError
from hiclr.engine import Interrupted, TrainData, load_checkpoint, train
from hiclr.engine.distributed import shutdown_distributed
from tests.hiclr.engine.test_loop import ToyTask, toy_cfg, toy_data


class SizeTask(ToyTask):
    """The toy task, remembering each step's batch size on this rank."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sizes = []

    def step(self, model, batch, generator, epoch):
        self.sizes.append(len(batch.ids))
        return super().step(model, batch, generator, epoch)


class NormTask:
    """A classifier with BatchNorm and nothing random: every rank computes what it is given."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 4 * 5 * 2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)
        )

    def step(self, model, batch, generator, epoch):
        return F.cross_entropy(model(batch.x), batch.labels), {}


def state_of(task) -> dict:
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


@contextlib.contextmanager
def counting_stop_checks(calls: list):
    """Within the block, each agreement of the ranks on a stop (`any_rank` in the loop) is appended."""
    from hiclr.engine import loop

    original = loop.any_rank

    def counted(flag, info, device):
        calls.append(flag)
        return original(flag, info, device)

    loop.any_rank = counted
    try:
        yield
    finally:
        loop.any_rank = original


def scenarios(rank: int, world: int, tmp: str) -> None:
    """What every rank runs, in one process group: results go to tmp/rank{rank}.pt."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=os.environ["TEST_DDP_PORT"],
    )
    torch.set_num_threads(1)
    out = {}
    batch = 4 * world  # 4 clips per rank
    data = toy_data()
    # an epoch of 37 clips: 9 whole batches on 2 ranks (8 on 3) and a partial one
    short = TrainData(x=data.x[:37], labels=data.labels[:37], ids=data.ids[:37])
    task = SizeTask()
    train(task, short, toy_cfg(epochs=1, **{"optim.batch_size": batch, "optim.drop_last": "false"}), None)
    out["uneven_sizes"] = task.sizes

    calls: list = []
    straight = SizeTask()
    with counting_stop_checks(calls):
        train(straight, data, toy_cfg(epochs=2, **{"optim.batch_size": batch, "run.log_every": 100}), f"{tmp}/straight")
    out["stop_checks"], out["straight_steps"] = len(calls), len(straight.sizes)
    out["straight"] = state_of(straight)

    if world == 2:
        # SIGTERM on rank 1 alone at its 3rd step; the ranks agree on the stop at the next log point
        try:
            train(
                ToyTask(signal_at=3 if rank == 1 else None),
                data,
                toy_cfg(epochs=2, **{"optim.batch_size": batch}),
                f"{tmp}/cut",
            )
        except Interrupted as stop:
            out["cut_exit"] = stop.exit_code
        cut = load_checkpoint(f"{tmp}/cut/last.pt")
        out["cut"] = {
            "epoch": cut["epoch"],
            "step": cut["step"],
            "augment_ranks": cut["generators"]["augment_ranks"],
            "torch_rng_ranks": [entry["torch"] for entry in cut["rng_ranks"]],
        }
        resumed = ToyTask()
        train(resumed, data, toy_cfg(epochs=2, **{"optim.batch_size": batch}), f"{tmp}/cut", resume=True)
        out["resumed"] = state_of(resumed)
        for sync in (True, False):
            norm = NormTask()
            train(norm, data, toy_cfg(epochs=1, **{"optim.batch_size": 8, "model.sync_bn": sync}), None)
            out[f"norm_sync_{sync}"] = state_of(norm)
        out["view_norm"] = per_view_norm(rank, world, sync=True)
    torch.save(out, f"{tmp}/rank{rank}.pt")
    shutdown_distributed()


VIEWS, CLIPS = 2, 3  # per rank: 2 views of 3 clips, view-major as a fused encoder call lays them


def view_clips(world: int) -> torch.Tensor:
    """(VIEWS, world * CLIPS, 4, 5, 3): every rank's clips of every view."""
    return torch.randn(VIEWS, world * CLIPS, 4, 5, 3, generator=torch.Generator().manual_seed(5))


def per_view_norm(rank: int, world: int, sync: bool) -> dict:
    """A per-view BatchNorm (`ViewBatchNorm2d`) on this rank's share of `view_clips`, synchronised or not."""
    from hiclr.engine.sync_bn import convert_sync_batchnorm
    from hiclr.models.view_norm import ViewBatchNorm2d, views_in_batch

    norm = ViewBatchNorm2d(4)
    if sync:
        convert_sync_batchnorm(norm)
    x = view_clips(world)[:, rank * CLIPS : (rank + 1) * CLIPS].reshape(VIEWS * CLIPS, 4, 5, 3)
    with views_in_batch(norm, VIEWS):
        y = norm(x)
    return {"y": y.detach(), "running_mean": norm.running_mean.clone(), "running_var": norm.running_var.clone()}


def run_ranks(tmp_path, world: int, limit: float = 300.0) -> list[dict]:
    """Start `world` ranks of `scenarios` and return each rank's results; a rank stuck in a collective
    fails the test after `limit` seconds instead of hanging the suite."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["TEST_DDP_PORT"] = str(s.getsockname()[1])
    context = mp.start_processes(scenarios, args=(world, str(tmp_path)), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + limit
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {world} DDP ranks did not finish within {limit:.0f} s (a hang)")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two")
    return tmp, run_ranks(tmp, 2)


@pytest.fixture(scope="module")
def three_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("three")
    return tmp, run_ranks(tmp, 3)


def assert_same_state(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if tolerance:
            torch.testing.assert_close(a[key], b[key], msg=key, **tolerance)
        else:
            assert torch.equal(a[key], b[key]), key


def test_a_partial_last_batch_is_cut_to_the_same_size_on_every_rank(two_ranks):
    # 37 clips in batches of 8 on 2 ranks leave 5, cut to 4: 2 a rank
    _, ranks = two_ranks
    assert [r["uneven_sizes"] for r in ranks] == [[4] * 4 + [2]] * 2


def test_ranks_stay_in_sync_and_the_checkpoint_holds_each_ranks_streams(two_ranks):
    assert_in_sync(*two_ranks)


@pytest.mark.slow
def test_three_ranks_cut_the_last_batch_alike_and_stay_in_sync(three_ranks):
    tmp, ranks = three_ranks
    # 37 clips in batches of 12 on 3 ranks leave 1, cut to 0
    assert [r["uneven_sizes"] for r in ranks] == [[4] * 3] * 3
    assert_in_sync(tmp, ranks)


def assert_in_sync(tmp, ranks: list[dict]) -> None:
    for other in ranks[1:]:
        assert_same_state(other["straight"], ranks[0]["straight"])
    ckpt = load_checkpoint(tmp / "straight" / "last.pt")
    assert ckpt["world_size"] == len(ranks) and len(ckpt["rng_ranks"]) == len(ranks)
    assert len(ckpt["generators"]["augment_ranks"]) == len(ranks)


def test_ranks_agree_on_a_stop_at_epoch_ends_only_between_log_points(two_ranks):
    _, ranks = two_ranks
    for r in ranks:  # 2 epochs of 5 steps, no log point: one agreement (all-reduce) per epoch
        assert r["straight_steps"] == 10 and r["stop_checks"] == 2


def test_a_two_rank_run_stopped_inside_an_epoch_resumes_bit_identically(two_ranks):
    tmp, ranks = two_ranks
    assert [r["cut_exit"] for r in ranks] == [130, 143]  # rank 0 stopped for rank 1's SIGTERM
    cut = ranks[0]["cut"]
    assert (cut["epoch"], cut["step"]) == (0, 4)  # the log point after rank 1's 3rd step
    states = cut["augment_ranks"]
    assert not torch.equal(states[0], states[1])  # each rank's own augmentation stream
    assert not torch.equal(cut["torch_rng_ranks"][0], cut["torch_rng_ranks"][1])
    for r in ranks:
        assert_same_state(r["resumed"], r["straight"])


def test_sync_bn_on_two_ranks_equals_one_rank_with_the_whole_batch(two_ranks):
    _, ranks = two_ranks
    one = NormTask()
    train(one, toy_data(), toy_cfg(epochs=1, **{"optim.batch_size": 8}), None)
    alone = state_of(one)
    for r in ranks:
        assert_same_state(r["norm_sync_True"], alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(AssertionError):  # per-rank statistics (the default) are another computation
        assert_same_state(ranks[0]["norm_sync_False"], alone, rtol=1e-5, atol=1e-6)


def test_sync_bn_keeps_one_statistic_per_view_over_all_ranks(two_ranks):
    from hiclr.models.view_norm import ViewBatchNorm2d, views_in_batch

    _, ranks = two_ranks
    whole = ViewBatchNorm2d(4)  # one process, each view's clips of both ranks
    with views_in_batch(whole, VIEWS):
        y = whole(view_clips(2).reshape(VIEWS * 2 * CLIPS, 4, 5, 3)).view(VIEWS, 2 * CLIPS, 4, 5, 3)
    for rank, r in enumerate(ranks):
        share = y[:, rank * CLIPS : (rank + 1) * CLIPS].reshape(VIEWS * CLIPS, 4, 5, 3)
        torch.testing.assert_close(r["view_norm"]["y"], share, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r["view_norm"]["running_mean"], whole.running_mean)
        torch.testing.assert_close(r["view_norm"]["running_var"], whole.running_var)


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused_in_one_sentence():
    from hiclr.engine.distributed import DistInfo
    from hiclr.engine.loop import _plan_batches

    cfg = toy_cfg(epochs=1, **{"optim.batch_size": 8})
    with pytest.raises(
        UserError,
        match=r"optim.batch_size 8 does not split evenly over the 3 DDP ranks; "
        r"use a multiple of 3 \(e.g. 6\)",
    ):
        _plan_batches(40, cfg["optim"], cfg["engine"], DistInfo(rank=0, world_size=3))
