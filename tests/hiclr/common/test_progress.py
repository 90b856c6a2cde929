"""Progress: a line every few seconds with done / total, rate and ETA when stderr is not a terminal."""

import io

from hiclr.common.progress import LineProgress, format_duration, progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_per_interval_with_done_total_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(100, desc="ntu120 parse", unit="file", interval_s=5, file=out, clock=clock)
    for _ in range(10):
        clock.now += 1
        bar.update(2)
    lines = out.getvalue().splitlines()
    assert lines == [
        "ntu120 parse: 10/100 files (10.0 %), 2.0 files/s, ETA 45 s",
        "ntu120 parse: 20/100 files (20.0 %), 2.0 files/s, ETA 40 s",
    ]


def test_the_last_line_says_how_long_it_took_and_carries_the_postfix():
    out, clock = io.StringIO(), Clock()
    with LineProgress(4, desc="train", unit="step", interval_s=1, file=out, clock=clock) as bar:
        bar.set_postfix({"loss": "1.2345"})
        for _ in range(4):
            clock.now += 30
            bar.update()
    assert out.getvalue().splitlines()[-1] == "train: 4/4 steps (100.0 %), 0.0 steps/s, took 2 min 0 s [loss=1.2345]"


def test_short_work_and_failed_work_print_nothing():
    out, clock = io.StringIO(), Clock()
    with LineProgress(3, interval_s=10, file=out, clock=clock) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    try:
        with LineProgress(3, interval_s=0, file=out, clock=clock) as bar:
            raise ValueError("boom")
    except ValueError:
        pass
    assert out.getvalue() == ""


def test_a_file_gets_lines_and_switched_off_progress_prints_nothing():
    out = io.StringIO()
    assert isinstance(progress(10, file=out), LineProgress)
    silent = progress(10, enabled=False, file=out)
    silent.update(10)
    silent.close()
    assert out.getvalue() == ""


def test_durations_read_as_hours_minutes_seconds():
    assert [format_duration(s) for s in (4.2, 75, 3725)] == ["4 s", "1 min 15 s", "1 h 2 min"]


def test_feature_extraction_in_a_log_prints_lines_not_a_carriage_return_bar(monkeypatch, capsys):
    import torch
    from torch import nn

    from hiclr.features import extract_features

    class Mean(nn.Module):
        feature_dim = 3

        def forward(self, x):
            return x.mean(dim=(2, 3, 4))

    monkeypatch.setenv("HICLR_PROGRESS_SECONDS", "0")  # a line on every batch
    features = extract_features(Mean(), torch.randn(10, 3, 4, 5, 2), batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert features.shape == (10, 3)
    assert "\r" not in err and "features: 3/3 batch" in err
