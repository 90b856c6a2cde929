"""`hiclr bench linear`: a 100-epoch linear probe on cached features vs through the frozen encoder.

Same random frame50-like clips (N, 3, 50, 25, 2), same random ST-GCN, same probe and schedule, in
the same run. The baseline (the reference's way) runs the frozen encoder on every training batch
and on the test set after every epoch; the cached probe runs the encoder once, then trains on the
features. Throughput is training samples per second of the whole probe (epochs x N_train / time,
feature extraction included for the cached probe). The baseline's cost per epoch is constant, so
it may be timed over fewer epochs (--baseline-epochs) and compared per sample.
"""

from __future__ import annotations

import argparse
import time

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=320, help="clips in all (default 320: 256 train, 64 test)")
    parser.add_argument("--classes", type=int, default=60, help="classes (default 60)")
    parser.add_argument("--epochs", type=int, default=100, help="probe epochs (default 100)")
    parser.add_argument(
        "--baseline-epochs", type=int, default=2, help="epochs the baseline is timed over (default 2; 0: all --epochs)"
    )
    parser.add_argument("--width", type=int, default=16, help="ST-GCN width (default 16: the reference's)")
    parser.add_argument("--frames", type=int, default=50, help="frames per clip (default 50)")
    parser.add_argument("--batch-size", type=int, default=128, help="probe batch (default 128)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--seed", type=int, default=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict:
    from hiclr.eval.common import resolve_device
    from hiclr.eval.linear import LinearSchedule, fit_linear
    from hiclr.features import extract_features
    from hiclr.models import build_encoder

    device = resolve_device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    n_test = max(1, args.samples // 5)
    n_train = args.samples - n_test
    x = torch.randn(args.samples, 3, args.frames, 25, 2, generator=g)
    labels = torch.randint(0, args.classes, (args.samples,), generator=g)
    torch.manual_seed(args.seed)
    encoder = build_encoder({"name": "stgcn", "width": args.width}).to(device).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    train_x, test_x = x[:n_train].to(device), x[n_train:].to(device)
    train_y, test_y = labels[:n_train], labels[n_train:]
    dim = encoder.feature_dim
    milestones = (int(0.8 * args.epochs),)

    # warm-up (allocator, cudnn autotune) outside the timings
    extract_features(encoder, train_x[:8], batch_size=8, device=device)

    base_epochs = args.baseline_epochs or args.epochs
    base_schedule = LinearSchedule(epochs=base_epochs, milestones=milestones, batch_size=args.batch_size)

    @torch.no_grad()
    def through(idx):
        return encoder(train_x[idx])

    def test_through():
        return extract_features(encoder, test_x, batch_size=256, device=device)

    _sync(device)
    t0 = time.perf_counter()
    base = fit_linear(through, train_y, test_through, test_y, args.classes, dim, base_schedule, args.seed, device)
    _sync(device)
    baseline_s = time.perf_counter() - t0

    schedule = LinearSchedule(epochs=args.epochs, milestones=milestones, batch_size=args.batch_size)
    t0 = time.perf_counter()
    train_f = extract_features(encoder, train_x, batch_size=256, device=device)
    test_f = extract_features(encoder, test_x, batch_size=256, device=device)
    _sync(device)
    extract_s = time.perf_counter() - t0
    cached = fit_linear(train_f, train_y, test_f, test_y, args.classes, None, schedule, args.seed, device)
    _sync(device)
    cached_s = time.perf_counter() - t0

    # same features, same probe: the first epoch's train loss agrees between the two paths
    agree = abs(base.history[0]["loss"] - cached.history[0]["loss"]) <= 1e-3 * max(1.0, abs(base.history[0]["loss"]))
    baseline_rate = base_epochs * n_train / baseline_s
    rate = args.epochs * n_train / cached_s
    return {
        "baseline_samples_per_s": baseline_rate,
        "samples_per_s": rate,
        "speedup": rate / baseline_rate,
        "device": str(device),
        "train_samples": n_train,
        "test_samples": n_test,
        "epochs": args.epochs,
        "baseline_epochs_timed": base_epochs,
        "baseline_s_per_epoch": baseline_s / base_epochs,
        "baseline_s_projected_for_all_epochs": baseline_s / base_epochs * args.epochs,
        "cached_s_total": cached_s,
        "cached_feature_extraction_s": extract_s,
        "first_epoch_loss_agrees": bool(agree),
    }
