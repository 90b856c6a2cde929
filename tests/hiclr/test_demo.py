"""The demo: one call runs data -> prep -> pre-training -> label efficiency and probes, and reports every row."""

from __future__ import annotations

import json

import numpy as np

from data_prep.synth import SynthConfig
from hiclr.demo import DIFFERENCE, ROW_NAMES, results_table, run_demo

TINY_FINETUNE = ["optim.epochs=1", "optim.batch_size=4", "optim.warmup_epochs=0"]


def test_the_demo_reports_label_efficiency_and_the_frozen_probes_beside_raw_input_and_random_init(tmp_path):
    tiny = SynthConfig(subjects=2, classes=4, repeats=1, cameras=2)
    report = run_demo(
        tmp_path / "demo",
        epochs=1,
        device="cpu",
        synth=tiny,
        fraction=0.5,
        extra=["optim.batch_size=8", "ssl.queue_size=16", "run.monitor_every=1"],
        finetune_extra=TINY_FINETUNE,
    )
    text = report.read_text()
    for label in ("pretrained", "raw", "random"):
        assert ROW_NAMES[label] in text
        assert (tmp_path / "demo" / f"eval_{label}" / "report.json").is_file()
    assert ROW_NAMES["supervised"] not in text and DIFFERENCE in text
    assert "fine-tuned on 50 % of the labels" in text
    assert "monitor" in text and (tmp_path / "demo" / "pretrain" / "pretrain_curve.md").is_file()
    raw = json.loads((tmp_path / "demo" / "eval_raw" / "report.json").read_text())
    assert "raw input" in json.dumps(raw["encoder"])
    semi = tmp_path / "demo" / "label_efficiency"
    subset = "semi_50pct_seed0.npy"
    assert np.array_equal(np.load(semi / "pretrained" / subset), np.load(semi / "scratch" / subset))
    rows = json.loads((semi / "label_efficiency.json").read_text())["rows"]
    pre = json.loads((semi / "pretrained" / "report.json").read_text())["protocols"]["semi"]["fractions"]["50pct"]
    assert rows[0]["pretrained"] == [pre["runs"][0]["top1_last"]]
    line = next(r for r in text.splitlines() if r.startswith(f"| {ROW_NAMES['pretrained']} |"))
    assert f"{pre['runs'][0]['top1_last']:.2f}" in line.split("|")[2]


def test_the_results_table_has_a_fine_tune_column_and_a_difference_row():
    lin = {"top1_last": 50.0, "top1_best": 55.5}
    ft_pre, ft_scr = {"top1_last": 70.0, "top1_best": 71.0}, {"top1_last": 40.0, "top1_best": 45.0}
    table = results_table(
        [
            ("pretrained", lin, {"top1": 40.25}, None, ft_pre),
            ("raw", lin, {"top1": 30.0}, None, None),
            ("random", {"top1_last": 20.0, "top1_best": 25.0}, {"top1": 10.0}, None, ft_scr),
            ("supervised", None, None, None, ft_pre),
        ],
        fraction=0.2,
    )
    rows = table.strip().splitlines()
    assert len(rows) == 7 and "fine-tuned on 20 % of the labels" in rows[0]
    assert rows[2] == f"| {ROW_NAMES['pretrained']} | 70.00 (71.00) | 50.00 (55.50) | 40.25 |"
    assert rows[3] == f"| {ROW_NAMES['raw']} | - | 50.00 (55.50) | 30.00 |"
    assert rows[5].startswith(f"| {ROW_NAMES['supervised']} | 70.00 (71.00) (all labels) | - | - |")
    assert rows[6] == f"| {DIFFERENCE} | **+30.00** | **+30.00** | **+30.25** |"
