"""Every report.json carries its provenance: the store's and the encoder checkpoint's sha256, the
resolved config, the toolkit and torch versions (each protocol's entry, and pre-training's report)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

import hiclr
from hiclr.provenance import provenance
from tests.hiclr.test_data_verify import command, encoder_file, store
from tests.hiclr.test_data_verify import hiclr as run


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return store(tmp_path_factory.mktemp("data") / "s.h5")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return encoder_file(tmp_path_factory.mktemp("encoder"))


def check(record: dict, data, config: dict) -> None:
    assert record["store"] == {"path": str(data), "sha256": sha256(data)}
    assert record["config"] == config and record["store_verified"] is True
    assert record["toolkit_version"] == hiclr.__version__ and record["torch_version"] == torch.__version__


@pytest.mark.parametrize("name", ["linear", "knn", "semi", "finetune"])
def test_each_protocol_entry_records_store_encoder_config_and_versions(tmp_path, data, encoder, name):
    argv = command(name, data, tmp_path, encoder)
    argv[argv.index("--encoder") + 1] = encoder
    assert run(argv) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    record = report["protocols"][name]["provenance"]
    check(record, data, report["configs"][name])
    assert record["encoder"] == {"path": encoder, "sha256": sha256(encoder)}


def test_a_baseline_is_named_where_a_checkpoint_would_be(tmp_path, data, encoder):
    assert run(command("knn", data, tmp_path, encoder)) == 0  # --encoder raw
    record = json.loads((tmp_path / "run" / "report.json").read_text())["protocols"]["knn"]["provenance"]
    assert record["encoder"] == {"baseline": "raw"} and record["store"]["sha256"] == sha256(data)


def test_pretraining_writes_a_report_with_the_provenance_of_its_encoder(tmp_path, data, encoder):
    assert run(command("pretrain", data, tmp_path, encoder)) == 0
    folder = tmp_path / "tiny_pretrain"
    report = json.loads((folder / "report.json").read_text())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert report["kind"] == "pretrain" and report["pretrain"]["epochs"] == 1
    check(report["provenance"], data, config)
    assert report["provenance"]["encoder"] == {
        "path": str(folder / "encoder.pt"),
        "sha256": sha256(folder / "encoder.pt"),
    }
    assert report["data"]["sha256"] == sha256(data) and report["data"]["train_samples"] == 16


def test_the_ensemble_names_the_logits_and_the_provenance_of_each_run(tmp_path, data, encoder):
    runs = []
    for stream in ("joint", "bone"):
        out = tmp_path / stream
        assert run(command("linear", data, out, encoder) + ["--set", f"data.stream={stream}"]) == 0
        runs.append(out / "run")
    assert run(["ensemble", *runs, "--out", tmp_path / "ens", "--no-plots"]) == 0
    record = json.loads((tmp_path / "ens" / "report.json").read_text())["protocols"]["ensemble"]["provenance"]
    assert [r["run"] for r in record["runs"]] == [str(r) for r in runs]
    for entry, folder in zip(record["runs"], runs):
        assert entry["logits_sha256"] == sha256(folder / "logits.npz")
        assert entry["provenance"]["linear"]["store"]["sha256"] == sha256(data)
    assert record["torch_version"] == torch.__version__


def test_a_changed_store_gets_a_new_sha256_in_the_same_process(tmp_path, data):
    copy = tmp_path / "c.h5"
    copy.write_bytes(data.read_bytes())
    first = provenance(None, store=copy)["store"]["sha256"]
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert provenance(None, store=copy)["store"]["sha256"] == sha256(copy) != first
