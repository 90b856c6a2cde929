"""The training engine on a toy task: schedule, checkpoints, metrics, signals, NaN stop, precision, DDP."""

import json
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hiclr.common.errors import UserError
from hiclr.config import load_config
from hiclr.engine import Interrupted, NonFiniteLoss, TrainData, load_checkpoint, lr_factor_fn, resolve_device, train
from tests.helpers.bench import run_tiny_bench_train

N, CLASSES = 40, 4


class ToyTask:
    """A small classifier with dropout and generator-drawn input noise (so every RNG matters)."""

    def __init__(self, nan_at=None, signal_at=None, signum=signal.SIGTERM):
        torch.manual_seed(0)  # a run builds its model from the seed (as hiclr.pretrain does)
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(3 * 4 * 5 * 2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, CLASSES)
        )
        self.calls, self.nan_at, self.signal_at, self.signum = 0, nan_at, signal_at, signum
        self.dtypes = []
        self.ended = []

    def step(self, model, batch, generator, epoch):
        self.calls += 1
        if self.calls == self.signal_at:
            os.kill(os.getpid(), self.signum)  # the real handler runs; the step still completes
        noise = torch.randn(batch.x.shape, generator=generator, device=batch.x.device)
        logits = model(batch.x + 0.1 * noise)
        self.dtypes.append(logits.dtype)
        loss = F.cross_entropy(logits.float(), batch.labels)
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        return loss, {"acc": (logits.argmax(1) == batch.labels).float().mean()}

    def end_epoch(self, epoch, means):
        self.ended.append(epoch)
        return {"epoch_hook": float(epoch)}


def toy_data():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(N) % CLASSES
    x = torch.randn(N, 3, 4, 5, 2, generator=g) + labels.view(-1, 1, 1, 1, 1).float()
    return TrainData(x=x, labels=labels, ids=torch.arange(100, 100 + N))


def toy_cfg(epochs=2, **extra):
    sets = [
        f"optim.epochs={epochs}",
        "optim.batch_size=8",
        "optim.lr=0.05",
        "optim.milestones=[1]",
        "run.log_every=2",
        "run.save_every=1",
        "engine.device=cpu",
        "engine.progress=false",
        "engine.tensorboard=false",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, sets)


def weights(path):
    return load_checkpoint(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------ schedule


def optim_section(**values) -> dict:
    """A resolved `optim` section (the defaults) with `values`."""
    return {**load_config(None)["optim"], **values}


def test_step_schedule_drops_lr_after_each_milestone_epoch():
    f = lr_factor_fn(optim_section(epochs=300, lr=0.1, milestones=[250], gamma=0.1, schedule="step"), 10)
    assert f(0) == 1.0 and f(2499) == 1.0
    assert f(2500) == pytest.approx(0.1) and f(2999) == pytest.approx(0.1)
    g = lr_factor_fn(
        optim_section(epochs=70, lr=0.1, milestones=[30, 55], gamma=0.1, schedule="step", warmup_epochs=5), 4
    )
    assert [g(s) for s in range(4)] == pytest.approx([1 / 20, 2 / 20, 3 / 20, 4 / 20])
    assert g(19) == 1.0 and g(20) == 1.0 and g(120) == pytest.approx(0.1) and g(220) == pytest.approx(0.01)


def test_cosine_schedule_runs_from_lr_to_min_lr_after_warmup():
    optim = optim_section(epochs=10, lr=0.1, min_lr=0.001, schedule="cosine", warmup_epochs=2)
    f = lr_factor_fn(optim, 5)
    assert f(0) == pytest.approx(1 / 10) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(10 + 20) == pytest.approx(0.01 + 0.99 * 0.5)  # half way through the cosine
    assert f(50) == pytest.approx(0.01)
    values = [f(s) for s in range(10, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# ------------------------------------------------------------------ a whole run


def test_run_writes_checkpoints_metrics_and_resolved_config(tmp_path):
    task = ToyTask()
    cfg = toy_cfg(epochs=2)
    result = train(task, toy_data(), cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "last.pt",
        "epoch_001.pt",
        "epoch_002.pt",
        "metrics.jsonl",
    }
    assert not list(run.glob("*.tmp"))
    assert result.epoch == 2 and result.step == 2 * (N // 8)
    assert task.ended == [0, 1]
    ckpt = torch.load(run / "last.pt", weights_only=True)  # safe loading works
    assert ckpt["epoch"] == 2 and ckpt["step"] == 10 and ckpt["steps_per_epoch"] == 5
    assert set(ckpt["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert ckpt["config"] == cfg and "augment" in ckpt["generators"]
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005)  # after milestone 1
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in lines if r["kind"] == "epoch"]
    steps = [r for r in lines if r["kind"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["step"] for r in steps] == [2, 4, 6, 8, 10]
    assert all(math.isfinite(r["loss"]) and "acc" in r and r["samples_per_s"] > 0 for r in lines)
    assert epochs[0]["epoch_hook"] == 0.0 and epochs[0]["lr"] == pytest.approx(0.05)


def test_training_reduces_the_toy_loss(tmp_path):
    result = train(
        ToyTask(), toy_data(), toy_cfg(epochs=10, **{"optim.milestones": "[9]", "optim.lr": 0.2}), tmp_path / "r"
    )
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if r["kind"] == "epoch"]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result.metrics["acc"] > 0.4  # chance is 0.25


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    train(ToyTask(), toy_data(), toy_cfg(epochs=1), tmp_path / "run")
    with pytest.raises(UserError, match="--resume"):
        train(ToyTask(), toy_data(), toy_cfg(epochs=1), tmp_path / "run")
    with pytest.raises(UserError, match="no checkpoint"):
        train(ToyTask(), toy_data(), toy_cfg(epochs=1), tmp_path / "other", resume=True)


def test_resume_after_one_epoch_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    train(ToyTask(), toy_data(), toy_cfg(epochs=2), tmp_path / "straight")
    train(ToyTask(), toy_data(), toy_cfg(epochs=1), tmp_path / "split")
    train(ToyTask(), toy_data(), toy_cfg(epochs=2), tmp_path / "split", resume=True)
    assert_same_weights(weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "split" / "last.pt"))
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["optimizer"]["state"][0]["momentum_buffer"].equal(b["optimizer"]["state"][0]["momentum_buffer"])
    assert a["rng"]["torch"].equal(b["rng"]["torch"])


def test_sigterm_saves_after_the_current_step_and_resume_is_exact(tmp_path):
    train(ToyTask(), toy_data(), toy_cfg(epochs=2), tmp_path / "straight")
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stop:
        train(ToyTask(signal_at=3), toy_data(), toy_cfg(epochs=2), tmp_path / "cut")
    assert stop.value.exit_code == 143
    message = str(stop.value)
    assert "SIGTERM" in message and "step 3" in message and "--resume" in message and "\n" not in message
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    ckpt = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["step"] == 3  # mid-epoch, after the step finished
    train(ToyTask(), toy_data(), toy_cfg(epochs=2), tmp_path / "cut", resume=True)
    assert_same_weights(weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "cut" / "last.pt"))

    def history(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["kind"], r["step"], r["loss"]) for r in map(json.loads, lines)]

    assert history("cut") == history("straight")  # one uninterrupted history, same losses


def test_a_sigterm_the_commands_start_up_received_stops_the_loop_after_its_first_step(tmp_path, monkeypatch):
    from hiclr.common import command_line as commands

    monkeypatch.setattr(commands, "_TERMINATED", True)  # received, and swallowed by a library
    with pytest.raises(Interrupted) as stop:
        train(ToyTask(), toy_data(), toy_cfg(epochs=2), tmp_path / "r")
    assert stop.value.exit_code == 143 and "SIGTERM" in str(stop.value)
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["step"] == 1


def test_ctrl_c_on_the_last_step_of_an_epoch_saves_the_finished_epoch(tmp_path):
    with pytest.raises(Interrupted) as stop:
        train(ToyTask(signal_at=5, signum=signal.SIGINT), toy_data(), toy_cfg(epochs=3), tmp_path / "r")
    assert stop.value.exit_code == 130
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 5


def test_a_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(NonFiniteLoss) as err:
        train(ToyTask(nan_at=8), toy_data(), toy_cfg(epochs=3), run)  # step 8 = epoch 2, batch 3
    message = str(err.value)
    assert "nan" in message and "epoch 2" in message and "step 8" in message and "last.pt" in message
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    epoch_lines = [
        json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if json.loads(x)["kind"] == "epoch"
    ]
    assert [r["epoch"] for r in epoch_lines] == [1]


def test_bf16_autocast_is_used_when_asked_and_fp32_by_default_on_cpu(tmp_path):
    fp32 = ToyTask()
    train(fp32, toy_data(), toy_cfg(epochs=1), None)
    assert set(fp32.dtypes) == {torch.float32}
    bf16 = ToyTask()
    result = train(bf16, toy_data(), toy_cfg(epochs=1, **{"engine.precision": "bf16"}), None)
    assert set(bf16.dtypes) == {torch.bfloat16} and math.isfinite(result.metrics["loss"])
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # master weights stay fp32


def test_compile_flag_wraps_the_model(tmp_path):
    task = ToyTask()
    seen = []
    original = task.step

    def step(model, batch, generator, epoch):
        seen.append(type(model).__name__)
        return original(model, batch, generator, epoch)

    task.step = step
    result = train(task, toy_data(), toy_cfg(epochs=1, **{"engine.compile": "eager"}), None)
    assert seen[0] == "OptimizedModule" and result.step == 5


def test_a_cuda_device_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")


def test_fewer_samples_than_a_batch_train_on_one_smaller_batch(tmp_path):
    data = toy_data()
    small = TrainData(x=data.x[:6], labels=data.labels[:6])
    result = train(ToyTask(), small, toy_cfg(epochs=2), None)
    assert result.step == 2


def _ddp_rank(rank, tmp):
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=os.environ["TEST_DDP_PORT"],
    )
    torch.set_num_threads(1)
    import torch.distributed as dist

    from hiclr.engine.distributed import shutdown_distributed

    task = ToyTask()
    sizes = []
    original = task.step

    def step(model, batch, generator, epoch):
        sizes.append(len(batch.ids))
        return original(model, batch, generator, epoch)

    task.step = step
    try:
        train(task, toy_data(), toy_cfg(epochs=2), f"{tmp}/run")
        torch.save({"state": task.model.state_dict(), "sizes": sizes}, f"{tmp}/rank{rank}.pt")
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other rank may never reach one
        raise
    shutdown_distributed()  # together, so no rank exits while the other tears down


def test_ddp_ranks_split_each_global_batch_and_stay_in_sync(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["TEST_DDP_PORT"] = str(s.getsockname()[1])
    mp.spawn(_ddp_rank, args=(str(tmp_path),), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["sizes"] == r1["sizes"] == [4] * 10  # global batch 8 = 2 ranks x 4
    for key, value in r0["state"].items():
        torch.testing.assert_close(r1["state"][key], value, msg=key)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")  # written by rank 0
    assert ckpt["world_size"] == 2 and ckpt["step"] == 10


def test_bench_train_reports_throughput_split_and_projection():
    result = run_tiny_bench_train("--variants", "none", "--repeats", "1")
    for key in ("baseline_samples_per_s", "samples_per_s", "speedup", "projected_300_epochs_h"):
        assert result[key] > 0 and math.isfinite(result[key])
    assert result["speedup"] == pytest.approx(result["samples_per_s"] / result["baseline_samples_per_s"])
    assert result["projected_300_epochs_h"] == pytest.approx(300 * 40091 / result["samples_per_s"] / 3600)
    fractions = result["data_fraction"] + result["augment_fraction"] + result["model_fraction"]
    assert fractions == pytest.approx(1.0) and result["model_ms_per_step"] > 0
    assert result["precision"] == "fp32" and result["full_size_configuration"] is False
    assert [v["name"] for v in result["variants"]] == ["reference", "ours"] and result["exact"] is True
    reference = result["variants"][0]["settings"]
    assert (reference["augment"], reference["fused_views"], reference["graph_conv"]) == (
        "numpy",
        "separate",
        "conv_first",
    )


def test_bench_train_times_each_switch_in_interleaved_repetitions_against_the_same_baseline():
    result = run_tiny_bench_train(
        "--variants", "fused_views=separate,graph_conv=conv_first,fused_views=shared", "--repeats", "2"
    )
    rows = {v["name"]: v for v in result["variants"]}
    assert list(rows) == ["reference", "ours", "fused_views=separate", "graph_conv=conv_first", "fused_views=shared"]
    assert all(len(v["ms_per_step_each_repetition"]) == 2 for v in rows.values())
    base = rows["reference"]["ms_per_step"]
    for row in rows.values():
        assert row["speedup"] == pytest.approx(base / row["ms_per_step"])
    assert [rows[n]["exact"] for n in rows] == [True, True, True, True, False]  # shared BN changes results
    with pytest.raises(UserError, match="unknown variant"):
        run_tiny_bench_train("--variants", "warp-drive")


def test_bench_train_variants_can_combine_switches():
    from hiclr.bench.train import is_exact, parse_variant

    grid = parse_variant("precision=bf16+fused_views=separate+compile=reduce-overhead")
    assert (grid["precision"], grid["fused_views"], grid["compile"], grid["graph_conv"]) == (
        "bf16",
        "separate",
        "reduce-overhead",
        "auto",
    )
    assert not is_exact(grid, "bf16") and is_exact(parse_variant("fused_views=separate"), "fp32")
    with pytest.raises(UserError, match="fused_views is one of"):
        parse_variant("fused_views=sometimes")


def test_a_nan_loss_between_log_points_is_found_before_the_epoch_is_saved(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(NonFiniteLoss) as err:  # step 3 of 5 in epoch 1, no log point before the end
        train(ToyTask(nan_at=3), toy_data(), toy_cfg(epochs=2, **{"run.log_every": 100}), run)
    assert "epoch 1, step 3 (batch 3 of 5)" in str(err.value) and "nan" in str(err.value)
    assert not (run / "last.pt").exists()


def test_training_steps_make_no_host_sync_between_log_points(tmp_path, monkeypatch):
    """Reading a tensor on the host (item, int, float, bool) waits for the device: the loop does it
    only at log points and epoch ends, never once per step."""
    reads = []
    for name in ("item", "__int__", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, *a, _f=original, _n=name: (reads.append(_n), _f(self, *a))[1]
        )
    result = train(ToyTask(), toy_data(), toy_cfg(epochs=2, **{"run.log_every": 100}), None)
    assert result.step == 10
    per_epoch = len(reads) / 2
    assert per_epoch < 5 * 1, reads  # fewer reads than steps (5 per epoch)


def test_compile_settings_name_modes_backends_and_which_capture_cuda_graphs():
    from hiclr.engine import captures_cuda_graphs, compile_options

    assert compile_options(False) is None and compile_options(True) == {}
    assert compile_options("reduce-overhead") == {"mode": "reduce-overhead"}
    assert compile_options("eager") == {"backend": "eager"}
    assert [
        captures_cuda_graphs(compile_options(v))
        for v in (False, True, "default", "reduce-overhead", "max-autotune", "eager")
    ] == [False, False, False, True, True, False]
    with pytest.raises(UserError, match="engine.compile"):
        compile_options(3)


def test_cuda_graphs_need_static_shapes_so_a_partial_last_batch_is_refused():
    # 40 samples in batches of 8 are whole; 38 are not: drop_last (the default) keeps shapes static
    data = toy_data()
    short = TrainData(x=data.x[:38], labels=data.labels[:38])
    with pytest.raises(UserError, match="drop_last"):
        train(
            ToyTask(),
            short,
            toy_cfg(epochs=1, **{"engine.compile": "reduce-overhead", "optim.drop_last": "false"}),
            None,
        )
    task = ToyTask()
    sizes = []
    original = task.step
    task.step = lambda model, batch, g, e: (sizes.append(len(batch.ids)), original(model, batch, g, e))[1]
    train(task, short, toy_cfg(epochs=1), None)  # drop_last: 4 whole batches
    assert sizes == [8, 8, 8, 8]


def test_the_optimizer_is_the_one_the_config_names_with_its_settings():
    from hiclr.config import SCHEMA
    from hiclr.engine.schedule import OPTIMIZERS, build_optimizer

    assert set(OPTIMIZERS) == set(SCHEMA["optim"]["name"].rule.options)
    params = [nn.Parameter(torch.zeros(3))]
    base = load_config(None)["optim"]
    sgd = build_optimizer(params, base)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == base["momentum"]
    adamw = build_optimizer(params, {**base, "name": "adamw", "lr": 1e-3, "momentum": 0.8, "weight_decay": 0.05})
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["betas"] == (0.8, 0.999) and adamw.defaults["weight_decay"] == 0.05
    assert adamw.defaults["lr"] == 1e-3


def test_last_pt_is_written_every_checkpoint_every_epochs_and_after_the_last(tmp_path, monkeypatch):
    from hiclr.engine import loop

    written = []
    original = loop._write_checkpoint

    def spy(r, path, state, *args):
        written.append((path.name, state.epoch))
        return original(r, path, state, *args)

    monkeypatch.setattr(loop, "_write_checkpoint", spy)
    train(ToyTask(), toy_data(), toy_cfg(epochs=3, **{"run.checkpoint_every": 2, "run.save_every": 0}), tmp_path / "r")
    assert written == [("last.pt", 2), ("last.pt", 3)]
    written.clear()
    with pytest.raises(Interrupted):  # a stop saves whatever the cadence
        train(ToyTask(signal_at=2), toy_data(), toy_cfg(epochs=3, **{"run.checkpoint_every": 2}), tmp_path / "s")
    assert written == [("last.pt", 0)]


def test_the_cuda_settings_apply_on_cuda_only_and_the_run_records_them(tmp_path):
    from hiclr.engine.device import configure_backends

    eng = toy_cfg()["engine"]
    assert eng["cudnn_benchmark"] is True and eng["tf32"] is True  # the defaults
    assert configure_backends(torch.device("cpu"), eng) == {
        "cudnn_benchmark": False,
        "tf32": False,
        "deterministic": False,
    }
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        assert configure_backends(torch.device("cuda"), eng) == {
            "cudnn_benchmark": True,
            "tf32": True,
            "deterministic": False,
        }
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        assert configure_backends(torch.device("cuda"), {**eng, "tf32": False})["tf32"] is False
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved
    train(ToyTask(), toy_data(), toy_cfg(epochs=1), tmp_path / "r")
    setup = json.loads((tmp_path / "r" / "engine.json").read_text())
    assert setup["device"] == "cpu" and setup["world_size"] == 1 and setup["precision"] == "fp32"
    assert (setup["cudnn_benchmark"], setup["tf32"], setup["sync_bn"]) == (False, False, False)


def test_a_compiled_run_records_its_compile_time_in_the_epoch_metrics(tmp_path):
    from hiclr.engine import Task

    torch._dynamo.reset()  # nothing cached from earlier tests: this run compiles
    task = ToyTask()
    assert isinstance(task, Task)
    train(task, toy_data(), toy_cfg(epochs=2, **{"engine.compile": "eager"}), tmp_path / "r")
    epochs = [
        json.loads(x)
        for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "epoch"
    ]
    assert epochs[0]["compile_s"] > 0 and epochs[0]["compiled_frames"] >= 1
    assert epochs[1]["compile_s"] >= epochs[0]["compile_s"]  # cumulative over the run
    train(ToyTask(), toy_data(), toy_cfg(epochs=1), tmp_path / "p")
    plain = [json.loads(x) for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert not any("compile_s" in r for r in plain)


def test_a_resume_from_the_final_snapshot_brings_last_pt_up_to_the_end_of_the_run(tmp_path):
    run = tmp_path / "r"
    train(ToyTask(), toy_data(), toy_cfg(epochs=2), run)
    end = load_checkpoint(run / "last.pt")
    (run / "last.pt").write_bytes((run / "epoch_001.pt").read_bytes())  # killed before last.pt was rewritten
    train(ToyTask(), toy_data(), toy_cfg(epochs=2), run, resume=True)
    last = load_checkpoint(run / "last.pt")
    assert (last["epoch"], last["step"]) == (end["epoch"], end["step"])
    assert all(torch.equal(last["model"][k], end["model"][k]) for k in end["model"])
