"""The demo: one call runs data -> prep -> pre-training -> probes, and reports every baseline row."""

from __future__ import annotations

import json


from data_prep.synth import SynthConfig
from hiclr.demo import ROW_NAMES, results_table, run_demo


def test_the_demo_reports_the_pretrained_encoder_beside_raw_input_and_random_init(tmp_path):
    tiny = SynthConfig(subjects=2, classes=4, repeats=1, cameras=2)
    report = run_demo(tmp_path / "demo", epochs=1, device="cpu", synth=tiny,
                      extra=["optim.batch_size=8", "ssl.queue_size=16", "run.monitor_every=1"])
    text = report.read_text()
    for label in ("pretrained", "raw", "random"):
        assert ROW_NAMES[label] in text
        assert (tmp_path / "demo" / f"eval_{label}" / "report.json").is_file()
    assert ROW_NAMES["supervised"] not in text
    assert "monitor" in text and (tmp_path / "demo" / "pretrain" / "pretrain_curve.md").is_file()
    raw = json.loads((tmp_path / "demo" / "eval_raw" / "report.json").read_text())
    assert "raw input" in json.dumps(raw["encoder"])


def test_the_results_table_has_one_row_per_encoder_and_no_knn_for_the_supervised_row():
    lin = {"top1_last": 50.0, "top1_best": 55.5}
    table = results_table([("pretrained", lin, {"top1": 40.25}, None), ("supervised", lin, None, None)])
    rows = table.strip().splitlines()
    assert len(rows) == 4
    assert rows[2] == f"| {ROW_NAMES['pretrained']} | 50.00 (55.50) | 40.25 |"
    assert rows[3].endswith("| - |") and "fine-tuned" in rows[3]
