"""DDP on CPU (gloo): every queue receives both ranks' keys; torchrun with --auto-resume survives a killed
worker and ends with the uninterrupted run's encoder."""

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hiclr.engine import load_checkpoint
from hiclr.engine.distributed import shutdown_distributed
from hiclr.ssl import ContrastiveLearner
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_random_store

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
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=120)
    )
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
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other rank may never reach one
        raise
    shutdown_distributed()  # together, so no rank exits while the other tears down


def run_ranks(tmp_path, limit: float = 300.0, grace: float = 20.0) -> None:
    """Spawn the WORLD ranks and wait for them. gloo's teardown can hang a rank after its results are
    written (seen in full-suite runs on torch 2.13): once every rank's file exists, a rank still
    alive after `grace` seconds is stopped instead of hanging the suite; errors still fail the test."""
    context = mp.start_processes(
        train_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
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


# ------------------------------------------------------------------ torchrun, as users launch it

ROOT = ROOT_DIR
ELASTIC_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
}


def pretrain_args(data, out, epochs: int = 3) -> list[str]:
    """A tiny pre-training (32 training clips, batch 8, mining from epoch 2) with --auto-resume."""
    return [
        "pretrain",
        "--config",
        str(ROOT / "configs" / "tiny" / "pretrain.yaml"),
        "--data",
        str(data),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--epochs",
        str(epochs),
        "--auto-resume",
        "--set",
        "optim.batch_size=8",
        "--set",
        "model.width=2",
        "--set",
        "ssl.queue_size=24",
        "--set",
        "ssl.dim=8",
        "--set",
        "ssl.hidden=16",
        "--set",
        "run.name=r",
        "--set",
        "run.log_every=1",
        "--set",
        "run.monitor_every=0",
        "--set",
        "engine.tensorboard=false",
        "--set",
        "engine.progress=false",
        "--set",
        "ssl.mining_epoch=1",
    ]


def torchrun_pretrain(data, out) -> list[str]:
    """`pretrain_args` on 2 gloo ranks (4 steps an epoch) under torchrun, one restart allowed."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "-m",
        "hiclr.cli",
        *pretrain_args(data, out),
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_random_store(tmp_path_factory.mktemp("data") / "tiny.h5")


def worker_pids(launcher: int) -> dict[int, int]:
    """{LOCAL_RANK: pid} of the workers torchrun (process `launcher`) runs now."""
    from data_prep.memory import child_pids

    found, stack = {}, [launcher]
    while stack:
        pid = stack.pop()
        stack += child_pids(pid)
        try:
            env = dict(
                item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
            )
        except OSError:
            continue
        if pid != launcher and "LOCAL_RANK" in env and "TORCHELASTIC_RUN_ID" in env:
            found[int(env["LOCAL_RANK"])] = pid
    return found


def logged_steps(run: Path) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [json.loads(line).get("step", 0) for line in lines if line.strip().endswith("}")]
    return max([s for s in steps if isinstance(s, int)], default=0)


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_and_ends_with_the_uninterrupted_encoder(store, tmp_path):
    straight = subprocess.run(
        torchrun_pretrain(store, tmp_path / "straight"), env=ELASTIC_ENV, capture_output=True, text=True, timeout=900
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    run = tmp_path / "killed" / "r"
    proc = subprocess.Popen(
        torchrun_pretrain(store, tmp_path / "killed"),
        env=ELASTIC_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while logged_steps(run) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until step 6: the second step of epoch 2 (of 4 a epoch)
    workers = worker_pids(proc.pid)
    assert proc.poll() is None and 1 in workers, "the run ended before a worker could be killed"
    os.kill(workers[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    assert "resuming" in err  # the restart continued from a checkpoint

    a = torch.load(tmp_path / "straight" / "r" / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "encoder.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last_a = load_checkpoint(tmp_path / "straight" / "r" / "last.pt")
    last_b = load_checkpoint(run / "last.pt")
    assert (last_b["epoch"], last_b["step"]) == (3, 12)
    for key in last_a["model"]:  # weights, EMA key encoder, queue keys, ids and pointer
        assert torch.equal(last_a["model"][key], last_b["model"][key]), key


def test_auto_resume_starts_afresh_in_an_empty_folder_and_resumes_a_folder_with_a_checkpoint(store, tmp_path, capsys):
    from hiclr.common.command_line import run_cli

    def hiclr(*argv):
        return run_cli("hiclr", "", "hiclr.commands", ["pretrain"], "", list(argv))

    assert hiclr(*pretrain_args(store, tmp_path, epochs=1)) == 0
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 1
    assert hiclr(*pretrain_args(store, tmp_path, epochs=2)) == 0  # continues, not refused
    assert "resuming" in capsys.readouterr().err
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["kind"] == "epoch"] == [1, 2]
    assert hiclr(*pretrain_args(store, tmp_path, epochs=2), "--resume") == 1  # one or the other
    assert "--auto-resume decides" in capsys.readouterr().err
