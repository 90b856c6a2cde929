"""scripts/device_check.sh: the dry run (CPU, tiny sizes) runs every part but the compiled one and
leaves the part files and a summary with every part's status, seconds and finite numbers; a part
that fails or hangs, or a check stopped from outside, leaves its status in the summary and the
parts after a failed one still run."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT_DIR

ROOT = ROOT_DIR
SCRIPT = ROOT / "scripts" / "device_check.sh"
PARTS = ["setup", "eager", "loss", "engine", "aug", "compiled", "tests"]
STATUSES = {"ok", "failed", "timeout", "skipped"}


def _check(out: Path, *options: str, timeout: float = 290, code: int = 0, **env) -> Path:
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run(
        ["bash", str(SCRIPT), *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == code, done.stdout + done.stderr
    return out / "device_check"


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    return _check(tmp_path_factory.mktemp("dry"), "--dry-run", timeout=620)  # the check's own limit: 595 s


def test_the_dry_run_writes_every_part_file_and_a_complete_summary(dry_run):
    summary = _summary(dry_run)
    assert summary["complete"] and summary["dry_run"]
    assert list(summary["parts"]) == PARTS
    for name in PARTS:
        part = json.loads((dry_run / f"{name}.json").read_text())
        assert part["status"] in STATUSES and part["status"] == summary["parts"][name]["status"]
        assert _finite(summary["parts"][name]["seconds"]) and summary["parts"][name]["seconds"] >= 0
    assert sorted(p.name for p in dry_run.iterdir()) == sorted([f"{n}.json" for n in PARTS] + ["summary.json"])


def test_the_dry_run_runs_every_part_on_the_cpu_but_the_compiled_one_and_the_cuda_tests(dry_run):
    summary = _summary(dry_run)
    statuses = {name: part["status"] for name, part in summary["parts"].items()}
    assert statuses == {**dict.fromkeys(PARTS, "ok"), "compiled": "skipped"}
    assert "--compile-on-cpu" in summary["parts"]["compiled"]["reason"]
    assert summary["device"] == "cpu"
    assert summary["cuda_tests"]["status"] == "skipped" and "CUDA" in summary["cuda_tests"]["reason"]
    assert summary["nccl"]["status"] == "ok" and summary["nccl"]["backend"] == "gloo"
    assert summary["nccl"]["max_weight_difference_between_ranks"] == 0.0


def test_the_dry_run_summary_holds_finite_step_times_memory_errors_and_projection(dry_run):
    summary = _summary(dry_run)
    for run in ("eager_bf16", "eager_fp32", "eager_bf16_dsta"):
        assert _finite(summary["step_ms"][run]) and summary["step_ms"][run] > 0
        assert _finite(summary["samples_per_s"][run]) and summary["samples_per_s"][run] > 0
        assert _finite(summary["peak_memory_mb"][run]) and summary["peak_memory_mb"][run] > 0
    assert _finite(summary["dsta_over_stgcn"])
    assert summary["step_ms"]["compiled_bf16"] is None and summary["compile_seconds"] is None
    for key in ("loss_rel_error", "grad_rel_error"):
        assert all(_finite(v) and v >= 0 for v in summary[key].values())
    for key in (
        "install_seconds",
        "engine_samples_per_s",
        "projection_minutes_300_epochs_ntu60_xsub",
        "aug_samples_per_s",
    ):
        assert _finite(summary[key]) and summary[key] >= 0, key
    eager = summary["records"]["eager"]
    assert eager["bf16"]["timed_steps"] == eager["bf16"]["step_ms"]["n"] >= 1


def test_a_failing_and_a_hanging_part_leave_their_status_and_the_next_part_still_runs(tmp_path):
    folder = _check(
        tmp_path,
        "--dry-run",
        "--parts",
        "eager,loss,aug",
        "--force",
        "eager=timeout",
        "--limit",
        "eager=3",
        "--force",
        "loss=fail",
        timeout=120,
    )
    summary = _summary(folder)
    parts = summary["parts"]
    assert [parts[n]["status"] for n in ("eager", "loss", "aug")] == ["timeout", "failed", "ok"]
    assert 3 <= parts["eager"]["seconds"] < 30
    assert "forced failure" in parts["loss"]["error"]
    assert json.loads((folder / "eager.json").read_text())["status"] == "timeout"
    assert json.loads((folder / "loss.json").read_text())["status"] == "failed"
    assert summary["complete"] and _finite(summary["aug_samples_per_s"])
    assert summary["step_ms"]["eager_bf16"] is None  # no number is made up for a part that hung


def test_a_check_stopped_from_outside_records_the_part_in_flight_and_skips_the_rest(tmp_path):
    folder = _check(
        tmp_path,
        "--dry-run",
        "--parts",
        "eager,loss",
        "--force",
        "eager=timeout",
        timeout=60,
        code=124,
        DEVICE_CHECK_OUTER_S="6",
    )
    summary = _summary(folder)
    assert not summary["complete"]
    assert summary["parts"]["eager"]["status"] == "timeout" and "SIGTERM" in summary["parts"]["eager"]["reason"]
    assert summary["parts"]["loss"]["status"] == "skipped"
    assert json.loads((folder / "loss.json").read_text())["status"] == "skipped"


@pytest.mark.slow
def test_the_compiled_part_on_the_cpu_reports_compile_time_and_graphs(tmp_path):
    folder = _check(
        tmp_path, "--dry-run", "--compile-on-cpu", "--parts", "compiled", "--limit", "compiled=600", timeout=700
    )
    summary = _summary(folder)
    assert summary["parts"]["compiled"]["status"] == "ok"
    assert _finite(summary["compile_seconds"]) and _finite(summary["step_ms"]["compiled_bf16"])
    record = summary["records"]["compiled"]
    assert record["backend"] == "eager" and record["graphs_after_warmup"] >= 1


def test_a_failed_setup_skips_the_other_parts_with_the_reason(tmp_path):
    folder = _check(tmp_path, "--dry-run", "--parts", "setup,eager", "--force", "setup=fail", timeout=60)
    parts = _summary(folder)["parts"]
    assert parts["setup"]["status"] == "failed"
    assert parts["eager"]["status"] == "skipped" and "setup failed" in parts["eager"]["reason"]
    assert json.loads((folder / "eager.json").read_text())["status"] == "skipped"


def _probe_wheel(folder: Path) -> Path:
    """A pure-Python wheel of one module, `devcheck_probe`."""
    import zipfile

    folder.mkdir()
    path = folder / "devcheck_probe-0.1-py3-none-any.whl"
    files = {
        "devcheck_probe/__init__.py": "VALUE = 7\n",
        "devcheck_probe-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: devcheck-probe\nVersion: 0.1\n",
        "devcheck_probe-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(
            "devcheck_probe-0.1.dist-info/RECORD",
            "".join(f"{name},,\n" for name in [*files, "devcheck_probe-0.1.dist-info/RECORD"]),
        )
    return path


def test_setup_installs_the_carried_wheels_and_times_it(tmp_path):
    wheel = _probe_wheel(tmp_path / "whl")
    folder = _check(
        tmp_path / "out", "--dry-run", "--parts", "setup", timeout=120, DEVICE_CHECK_WHEELS=str(wheel.parent)
    )
    setup = _summary(folder)["records"]["setup"]
    assert setup["status"] == "ok" and setup["installed"] == [wheel.name]
    site = Path(setup["site_packages"])
    try:
        assert (site / "devcheck_probe" / "__init__.py").exists()
        assert _finite(setup["install_seconds"]) and setup["env"]["torch"]
    finally:
        shutil.rmtree(site, ignore_errors=True)


def test_a_part_that_the_budget_cannot_fit_is_skipped(tmp_path):
    folder = _check(tmp_path, "--dry-run", "--parts", "setup", "--budget", "0", timeout=60)
    part = _summary(folder)["parts"]["setup"]
    assert part["status"] == "skipped" and "budget" in part["reason"]


def test_without_OUT_the_files_go_to_runs_device_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "scripts" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.delenv("OUT", raising=False)
    assert module.default_out() == ROOT / "runs" / "device_check"
    monkeypatch.setenv("OUT", "/somewhere")
    assert module.default_out() == Path("/somewhere") / "device_check"


def test_an_unknown_part_is_refused_in_one_sentence(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--force", "nope=fail"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "PART one of setup" in done.stderr and not (tmp_path / "device_check" / "summary.json").exists()
