"""Two CPU processes (gloo) train a few steps with DDP: every queue receives both ranks' keys."""

import datetime
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hiclr.ssl import ContrastiveLearner

WORLD, BATCH, STEPS, QUEUE = 2, 4, 3, 16


class View:
    def __init__(self, x, mask=None):
        self.x, self.mask = x, mask


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.feature_dim = 8
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 8)

    def forward(self, x):
        return self.fc(self.bn(x.mean(dim=(2, 3, 4))))


def train_rank(rank, init_file, out_dir):
    torch.set_num_threads(1)  # two processes on a shared CPU
    # a bounded wait: a rank stuck in a collective fails the test instead of hanging the suite
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))
    try:
        torch.manual_seed(rank)  # different inits per rank: DDP must broadcast rank 0's state
        learner = ContrastiveLearner(TinyBackbone, "hiclr", dim=6, hidden=10, queue_size=QUEUE)
        # the queue stays identical through all_gather: no need to broadcast it every step
        model = DistributedDataParallel(learner, broadcast_buffers=False)
        optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.1)
        gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        for step in range(STEPS):
            views = [View(torch.randn(BATCH, 3, 6, 5, 2, generator=gen)) for _ in range(4)]
            views[3].mask = torch.rand(BATCH, 1, 6, 5, 1, generator=gen) < 0.3
            ids = 1000 * rank + BATCH * step + torch.arange(BATCH)
            loss, _ = model(views, ids, **learner.switches(step))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step == 0:  # half the queue still holds its initial keys, which DDP synced at wrap time
                torch.save(learner.queue.keys.clone(), f"{out_dir}/rank{rank}_queue_step0.pt")
        torch.save({k: v.clone() for k, v in learner.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_ranks(tmp_path, limit: float = 300.0, grace: float = 20.0) -> None:
    """Spawn the WORLD ranks and wait for them. gloo's teardown can hang a rank after its results are
    written (seen in full-suite runs on torch 2.13): once every rank's file exists, a rank still
    alive after `grace` seconds is stopped instead of hanging the suite; errors still fail the test."""
    context = mp.start_processes(train_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD,
                                 join=False, start_method="spawn")
    deadline, written_at = time.monotonic() + limit, None
    while not context.join(timeout=1.0):
        if written_at is None and all((tmp_path / f"rank{r}.pt").exists() for r in range(WORLD)):
            written_at = time.monotonic()
        if written_at is not None and time.monotonic() - written_at > grace:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            return
        assert time.monotonic() < deadline, f"the {WORLD} DDP ranks did not finish within {limit:.0f} s"


def test_ddp_queue_receives_the_keys_of_both_ranks(tmp_path):
    run_ranks(tmp_path)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # 3 steps x 2 ranks x 4 keys = 24 keys through a queue of 16: ptr = 24 % 16
    for state in states:
        assert int(state["queue.ptr"]) == (STEPS * WORLD * BATCH) % QUEUE
        ids = set(state["queue.ids"].tolist())
        assert any(i < 1000 for i in ids) and any(i >= 1000 for i in ids)
        # the last step's keys of rank 0 then rank 1 sit just before the pointer
        ptr = int(state["queue.ptr"])
        last = [(i - 2 * BATCH) % QUEUE for i in range(ptr, ptr + 2 * BATCH)]
        expected = [BATCH * (STEPS - 1) + j for j in range(BATCH)]
        assert state["queue.ids"][last].tolist() == expected + [1000 + i for i in expected]
    first = [torch.load(tmp_path / f"rank{r}_queue_step0.pt", weights_only=True) for r in range(WORLD)]
    torch.testing.assert_close(first[1], first[0])
    for name, value in states[0].items():
        # queue, pointer, query weights (gradients all-reduced), EMA key weights, mask token agree
        if name.endswith(("running_mean", "running_var")):
            continue  # BatchNorm statistics are per rank (per-GPU BN, as the reference)
        torch.testing.assert_close(states[1][name], value, msg=name)
