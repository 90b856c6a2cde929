"""Ablation sweeps: every (variant, seed) pre-trained, probed (linear + kNN) and tabulated (`hiclr sweep`).

The sweep file format, the output folder's layout and the table's columns: docs/configs.md, "Sweep files".
A finished (variant, seed) is skipped, an interrupted pre-training resumes from its last.pt, and a run
whose saved config differs from the one the sweep now resolves is refused rather than mixed in.
"""

from __future__ import annotations

import difflib
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hiclr.common.atomic import atomic_write_text
from hiclr.common.errors import UserError
from hiclr.eval.baselines import BASELINES

TOP_KEYS = ("pretrain", "linear", "knn", "seeds", "baselines", "reference", "variants")
VARIANT_KEYS = ("config", "set")
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
RESULT = "result.json"
# config keys that do not change what a run computes (compared when a finished run is reused)
VOLATILE = {("run", "out"), ("run", "name"), ("engine", "device"), ("engine", "progress"), ("engine", "tensorboard")}


# ---------------------------------------------------------------- the sweep file


@dataclass
class Variant:
    name: str
    config: Path  # the pre-training config file
    overrides: list[str] = field(default_factory=list)


@dataclass
class Sweep:
    path: Path
    pretrain: Path
    linear: Path
    knn: Path
    seeds: list[int]
    baselines: list[str]
    variants: dict[str, Variant]
    reference: str = "hiclr"


def _unknown(path: Path, where: str, key, known) -> UserError:
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.5)
    hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
    return UserError(f"{path}: unknown key `{where}{key}` in the sweep file; {hint}")


def _file(path: Path, value, where: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{path}: `{where}` must be a config file path (relative to the sweep file), not {value!r}")
    target = (path.parent / value).resolve()
    if not target.is_file():
        raise UserError(f"{path}: `{where}` names {target}, which does not exist; paths are relative to the sweep file")
    return target


def _overrides(path: Path, value, where: str) -> list[str]:
    """`set:` as a list of KEY=VALUE strings or a mapping of dotted key -> YAML value."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if not isinstance(value, list):
        raise UserError(
            f"{path}: `{where}` must be a list of KEY=VALUE overrides or a mapping of "
            f"dotted keys to values, not {value!r}"
        )
    for item in value:
        if not isinstance(item, str) or "=" not in item:
            raise UserError(
                f"{path}: `{where}` holds {item!r}; each override is a KEY=VALUE string, e.g. ssl.objective=skeletonclr"
            )
    return list(value)


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (see the module docstring); one `UserError` per mistake."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist; check the path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({getattr(err, 'problem', err)}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a sweep file is a mapping with keys {', '.join(TOP_KEYS)}")
    for key in raw:
        if key not in TOP_KEYS:
            raise _unknown(path, "", key, TOP_KEYS)
    for key in ("pretrain", "linear", "knn", "seeds", "variants"):
        if key not in raw:
            raise UserError(
                f"{path}: the sweep file has no `{key}`; it needs pretrain, linear, knn, seeds and variants"
            )
    files = {key: _file(path, raw[key], key) for key in ("pretrain", "linear", "knn")}
    seeds = check_seeds(raw["seeds"], f"{path}: `seeds`")

    baselines = raw.get("baselines") or []
    if not isinstance(baselines, list) or any(b not in BASELINES for b in baselines):
        raise UserError(f"{path}: `baselines` is {baselines!r}; list some of {', '.join(BASELINES)}")
    if len(set(baselines)) != len(baselines):
        raise UserError(f"{path}: `baselines` names a baseline twice ({baselines!r})")

    variants_raw = raw["variants"]
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise UserError(f"{path}: `variants` must be a non-empty mapping of name -> {{config, set}}")
    variants = {}
    for name, spec in variants_raw.items():
        name = str(name)
        if not NAME.match(name):
            raise UserError(
                f"{path}: variant name {name!r} is not a folder name; use letters, digits, '_', '-' and '.'"
            )
        if name in BASELINES:
            raise UserError(f"{path}: variant name {name!r} is reserved for a baseline; rename it")
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise UserError(
                f"{path}: variant `{name}` must be a mapping with `config` and/or `set` (or {{}}), not {spec!r}"
            )
        for key in spec:
            if key not in VARIANT_KEYS:
                raise _unknown(path, f"variants.{name}.", key, VARIANT_KEYS)
        config = (
            _file(path, spec["config"], f"variants.{name}.config")
            if spec.get("config") is not None
            else files["pretrain"]
        )
        variants[name] = Variant(name, config, _overrides(path, spec.get("set"), f"variants.{name}.set"))

    reference = raw.get("reference", "hiclr")
    if "reference" in raw and reference not in variants:
        raise UserError(
            f"{path}: `reference` is {reference!r}, which is not a variant; name one of {', '.join(variants)}"
        )
    return Sweep(
        path.resolve(),
        files["pretrain"],
        files["linear"],
        files["knn"],
        seeds,
        list(baselines),
        variants,
        str(reference),
    )


def check_seeds(seeds, where: str) -> list[int]:
    if not isinstance(seeds, list) or not seeds:
        raise UserError(f"{where} is {seeds!r}; list at least one seed, e.g. seeds: [0, 1, 2]")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise UserError(f"{where} is {seeds!r}; seeds are integers")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where} names a seed twice ({seeds!r})")
    return list(seeds)


# ---------------------------------------------------------------- planning


@dataclass
class Run:
    name: str  # variant or baseline
    seed: int
    kind: str  # "variant" | "baseline"
    folder: Path  # DIR/<name>/seed<s>
    pretrain_cfg: dict  # resolved (for a baseline: the sweep's pretrain config, for its model)
    linear_cfg: dict
    knn_cfg: dict


def plan(
    sweep: Sweep,
    store: str | Path,
    out: str | Path,
    *,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    overrides: list[str] | None = None,
    device: str | None = None,
) -> list[Run]:
    """Every run of the sweep (baselines first, then the variants in file order, seed by seed),
    all configs resolved, so that a bad override fails before anything runs."""
    from hiclr.config import load_config

    seeds = sweep.seeds if seeds is None else check_seeds(list(seeds), "--seeds")
    names = list(sweep.baselines) + list(sweep.variants)
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise UserError(
                f"--only {unknown[0]}: no such variant or baseline in {sweep.path}; known: {', '.join(names)}"
            )
        names = [n for n in names if n in only]
    store, out = Path(store), Path(out)
    extra = list(overrides or [])
    dev = [f"engine.device={device}"] if device else []
    dev += [o for o in extra if o.replace(" ", "").startswith("data.verify=")]  # evaluations read the store too

    def resolve(file: Path, sets: list[str], what: str) -> dict:
        try:
            return load_config(file, sets)
        except UserError as err:
            raise UserError(f"{sweep.path}, {what}: {err}") from None

    from hiclr.config import model_overrides

    runs = []
    for name in names:
        kind = "baseline" if name in BASELINES else "variant"
        for seed in seeds:
            folder = out / name / f"seed{seed}"
            common = [f"data.path={store}", f"run.seed={seed}"] + dev
            if kind == "variant":
                v = sweep.variants[name]
                pre = resolve(
                    v.config,
                    v.overrides + extra + common + [f"run.out={folder}", "run.name=pretrain"],
                    f"variant {name}",
                )
            else:
                pre = resolve(sweep.pretrain, extra + common, f"baseline {name}")
            model = model_overrides(pre["model"])  # the random baseline: the pre-trained encoder
            lin = resolve(sweep.linear, common + model + [f"run.out={folder}", "run.name=eval"], "linear")
            knn = resolve(sweep.knn, common + model + [f"run.out={folder}", "run.name=eval"], "knn")
            runs.append(Run(name, seed, kind, folder, pre, lin, knn))
    return runs


# ---------------------------------------------------------------- one run


def step_cost(metrics_path: str | Path) -> dict:
    """From metrics.jsonl's epoch records: `step_s`, seconds per step (summed time_s / summed steps)
    over the epochs after the first when there are several (the first carries the process's warm-up,
    which falls on whichever variant runs first), `step_s_all` over every epoch, the summed epoch
    time, the number of steps and epochs, and the last epoch's loss."""
    records = []
    path = Path(metrics_path)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("kind") == "epoch":
                    records.append(row)
    per_epoch, previous = [], 0
    for row in records:
        per_epoch.append((float(row.get("time_s", 0.0)), int(row["step"]) - previous))
        previous = int(row["step"])

    def rate(rows):
        steps = sum(n for _, n in rows)
        return sum(t for t, _ in rows) / steps if steps else None

    loss = records[-1].get("loss") if records else None
    return {
        "step_s": rate(per_epoch[1:] if len(per_epoch) > 1 else per_epoch),
        "step_s_all": rate(per_epoch),
        "train_time_s": sum(t for t, _ in per_epoch),
        "steps": sum(n for _, n in per_epoch),
        "epochs": len(records),
        "final_loss": loss if isinstance(loss, (int, float)) else None,
    }


def _comparable(cfg: dict) -> dict:
    plain = yaml.safe_load(yaml.safe_dump(cfg))
    for section, key in VOLATILE:
        plain.get(section, {}).pop(key, None)
    return plain


def _first_difference(a, b, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix[:-1]} ({a!r} there, {b!r} now)"


def _check_same(saved: dict | None, cfg: dict, where: Path, what: str) -> None:
    if saved is None:
        return
    diff = _first_difference(_comparable(saved), _comparable(cfg))
    if diff:
        raise UserError(
            f"{where} was run with another {what} config ({diff}); use another --out or delete that folder to rerun it"
        )


def _read_yaml(path: Path) -> dict | None:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def execute(run: Run, store: str | Path, *, plots: bool = False, progress: bool = False) -> dict:
    """Pre-train (variants; resumed or reused when possible), then linear + kNN; returns the record,
    also written to `<folder>/result.json`."""
    from hiclr.eval.baselines import Baseline
    from hiclr.eval.knn import run_knn
    from hiclr.eval.linear import run_linear
    from hiclr.pretrain import pretrain

    eval_dir = run.folder / "eval"
    record = {"variant": run.name, "kind": run.kind, "seed": run.seed}
    if run.kind == "variant":
        pre_dir = run.folder / "pretrain"
        _check_same(_read_yaml(pre_dir / "config.yaml"), run.pretrain_cfg, pre_dir, "pretrain")
        encoder = pre_dir / "encoder.pt"
        wall, resumed = None, False
        if not encoder.is_file():
            resumed = (pre_dir / "last.pt").is_file()
            start = time.perf_counter()
            encoder = Path(pretrain(run.pretrain_cfg, resume=resumed, run_dir=pre_dir).outputs["encoder"])
            wall = time.perf_counter() - start
        cost = step_cost(pre_dir / "metrics.jsonl")
        record.update({"encoder": str(encoder), "pretrain_wall_s": wall, "pretrain_resumed": resumed, **cost})
    else:
        encoder = Baseline(run.name)  # built by the protocol on its own training split
        record.update({"encoder": run.name, "pretrain_wall_s": None, "step_s": None, "final_loss": None})
    lin = run_linear(run.linear_cfg, encoder, out=eval_dir, progress=progress, plots=plots)
    knn = run_knn(run.knn_cfg, encoder, out=eval_dir, progress=progress, plots=plots)
    record.update(
        {
            "knn_top1": knn["top1"],
            "knn_k": knn["k"],
            "linear_top1_last": lin["top1_last"],
            "linear_top1_best": lin["top1_best"],
            "linear_best_epoch": lin["best_epoch"],
            "linear_epochs": lin["epochs"],
            "eval_dir": str(eval_dir),
        }
    )
    saved = {**record, "configs": {"pretrain": run.pretrain_cfg, "linear": run.linear_cfg, "knn": run.knn_cfg}}
    atomic_write_text(run.folder / RESULT, json.dumps(saved, indent=1, default=str) + "\n")
    return record


def finished(run: Run) -> dict | None:
    """The stored record of a finished run (checked against the run's configs), else None."""
    path = run.folder / RESULT
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    configs = saved.pop("configs", {}) or {}
    for what, cfg in (("pretrain", run.pretrain_cfg), ("linear", run.linear_cfg), ("knn", run.knn_cfg)):
        _check_same(configs.get(what), cfg, run.folder, what)
    return saved


def run_line(record: dict, skipped: bool = False) -> str:
    """The one line printed per run."""
    parts = [
        f"{record['variant']} seed {record['seed']}: kNN top-1 {record['knn_top1']:.2f}",
        f"linear top-1 {record['linear_top1_last']:.2f} (last epoch), {record['linear_top1_best']:.2f} (best)",
    ]
    if record.get("step_s") is not None:
        parts.append(f"{1000 * record['step_s']:.0f} ms/step")
    if skipped:
        parts.append("(done before, skipped)")
    elif record.get("pretrain_wall_s") is not None:
        wall = record["pretrain_wall_s"]
        parts.append(f"pre-training {wall / 60:.1f} min" if wall >= 60 else f"pre-training {wall:.0f} s")
    return ", ".join(parts)


# ---------------------------------------------------------------- aggregation (pure)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample std); std is None below two values, both None for none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def aggregate(records: list[dict], reference: str = "hiclr") -> list[dict]:
    """One summary row per variant or baseline of `records`: baselines first, then variants, each
    in order of first appearance. Means and sample stds over seeds of kNN top-1 and linear top-1
    (last epoch), the mean step cost and the step cost relative to `reference` (None without it)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["variant"], []).append(r)
    names = sorted(groups, key=lambda n: (groups[n][0].get("kind") != "baseline", list(groups).index(n)))
    rows = []
    for name in names:
        group = sorted(groups[name], key=lambda r: r["seed"])
        knn_m, knn_s = mean_std([r["knn_top1"] for r in group])
        lin_m, lin_s = mean_std([r["linear_top1_last"] for r in group])
        step_m, _ = mean_std([r.get("step_s") for r in group])
        rows.append(
            {
                "variant": name,
                "kind": group[0].get("kind", "variant"),
                "seeds": [r["seed"] for r in group],
                "n": len(group),
                "knn_top1_mean": knn_m,
                "knn_top1_std": knn_s,
                "linear_top1_last_mean": lin_m,
                "linear_top1_last_std": lin_s,
                "step_s_mean": step_m,
            }
        )
    ref = next((r["step_s_mean"] for r in rows if r["variant"] == reference), None)
    for row in rows:
        row["step_cost_rel"] = row["step_s_mean"] / ref if ref and row["step_s_mean"] is not None else None
    return rows


def format_table(rows: list[dict], reference: str = "hiclr") -> str:
    """The Markdown table of `aggregate`'s rows."""
    lines = [
        f"| run | kNN top-1 (%) | linear top-1, last epoch (%) | step cost (ms/step) | "
        f"step cost vs {reference} | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"{r['variant']} (baseline)" if r["kind"] == "baseline" else r["variant"]
        step = "—" if r["step_s_mean"] is None else f"{1000 * r['step_s_mean']:.1f}"
        rel = "—" if r["step_cost_rel"] is None else f"{r['step_cost_rel']:.2f}×"
        seeds = f"n={r['n']} ({', '.join(map(str, r['seeds']))})"
        lines.append(
            f"| {name} | {format_mean_std(r['knn_top1_mean'], r['knn_top1_std'])} | "
            f"{format_mean_std(r['linear_top1_last_mean'], r['linear_top1_last_std'])} | "
            f"{step} | {rel} | {seeds} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the whole sweep


def run_sweep(
    sweep_path: str | Path,
    store: str | Path,
    out: str | Path,
    *,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    overrides: list[str] | None = None,
    device: str | None = None,
    plots: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run (or continue) a sweep into `out`; writes results.json and results.md; returns
    {"records", "rows", "table"}."""
    sweep = load_sweep(sweep_path)
    if not Path(store).is_file():
        raise UserError(
            f"--data {store} does not exist; prepare a store with hiclr-prep (or run "
            "hiclr demo, which writes demo_out/synth.h5)"
        )
    store, out = Path(store).resolve(), Path(out)
    progress = sys.stderr.isatty() if progress is None else progress
    # every config of the file is resolved first (a mistake anywhere fails before anything runs)
    everything = plan(sweep, store, out, seeds=seeds, overrides=overrides, device=device)
    todo = plan(sweep, store, out, seeds=seeds, only=only, overrides=overrides, device=device) if only else everything
    for run in todo:
        record = finished(run)
        skipped = record is not None
        if record is None:
            record = execute(run, store, plots=plots, progress=progress)
        echo(run_line(record, skipped))

    # the table: every run of the file for these seeds that has a record (also those --only left out)
    records = [r for r in (_stored(run) for run in everything) if r is not None]
    rows = aggregate(records, sweep.reference)
    table = format_table(rows, sweep.reference)
    atomic_write_text(
        out / "results.json",
        json.dumps(
            {
                "sweep": str(sweep.path),
                "data": str(store),
                "reference": sweep.reference,
                "runs": records,
                "summary": rows,
            },
            indent=1,
        )
        + "\n",
    )
    atomic_write_text(
        out / "results.md",
        f"# Sweep {sweep.path.name}\n\nData: `{store}`; "
        f"runs in `{out}`; kNN and linear top-1 are means ± sample std over seeds; step cost: "
        "ms per pre-training step after the first epoch, mean over seeds.\n\n"
        f"{table}",
    )
    return {"records": records, "rows": rows, "table": table}


def _stored(run: Run) -> dict | None:
    path = run.folder / RESULT
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved.pop("configs", None)
    return saved
