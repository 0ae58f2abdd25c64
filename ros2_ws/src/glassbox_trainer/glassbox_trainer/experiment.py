"""Controlled training experiments: one base config, named variants, several seeds, one summary.

An experiment file (``config/train/experiments/eloss.yaml``) holds one section per study::

    lidar:
      base: lidar_base.yaml            # a training config, relative to the experiment file
      metric: car/bev@0.5              # headline validation metric (default: the task's)
      threshold: 0.25                  # "converged" = first evaluation at or above this value
      seeds: [0, 1, 2]                 # training seeds (initialisation, data order, augmentation)
      runs:
        baseline: {}
        eloss_l1: {eloss: {weight: 100.0, per_dim: true}}
        teacher: {_seeds: [0], model_size: teacher}
        kd: {_after: [teacher], distill: {teacher: "{section_dir}/teacher_s0/model.pt", kd_weight: 1.0}}
      tables:
        Eloss: [baseline, eloss_l1]

Each run is the base config deep-merged with the variant's keys (``_seeds`` and ``_after`` are the experiment's
own: the seeds of that variant, and variants that must finish first). The merged config is written next to the
run (``<out>/<section>/<variant>_s<seed>/config.yaml``) and trained by ``glassbox-train --resume`` in its own
process, ``--jobs`` at a time, so an interrupted experiment continues where it stopped and every run can be
repeated alone. A run that fails (a non-finite loss, say) is recorded with its error (``failed.txt``) and reported, not
hidden; the next invocation tries it again.

``--summarise`` reads the runs back and writes ``<section>.json``, a Markdown table and plots into ``--docs``:
per variant, over seeds, the final and best metric, the mean metric over all evaluations (the Eloss paper's
"average accuracy during training"), the step at which ``threshold`` was first reached, training time, and the
variance of the layer-to-layer entropy changes (Eloss's L1 per group, nats per dimension, summed over the
task's Eloss groups) measured on validation batches for every run alike, whatever its loss was. Each variant is
compared with the table's first one by Welch's t-test on the final metric.

    python -m glassbox_trainer.experiment --config config/train/experiments/eloss.yaml --section lidar \\
        --out runs/experiments --jobs 2
    python -m glassbox_trainer.experiment --config config/train/experiments/eloss.yaml --section lidar \\
        --out runs/experiments --summarise --docs docs/experiments
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from glassbox.config import ConfigError, read_yaml

RESERVED = ("_seeds", "_after")
DONE = "result.json"
FAILED = "failed.txt"


@dataclass(frozen=True)
class Run:
    """One training run of an experiment."""

    section: str
    variant: str
    seed: int
    config: dict
    out: Path
    after: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.section}/{self.variant}_s{self.seed}"

    @property
    def done(self) -> bool:
        return (self.out / DONE).exists()


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` merged in: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _substitute(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**mapping) if "{" in value else value
    if isinstance(value, dict):
        return {k: _substitute(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, mapping) for v in value]
    return value


def load_section(path: str | Path, section: str) -> dict:
    """The experiment section, checked: ``base``, ``seeds``, ``runs`` and ``tables`` that name known runs."""
    spec = read_yaml(path, section)
    where = f"{path} [{section}]"
    for key in ("base", "runs"):
        if key not in spec:
            raise ConfigError(f"{where}: missing '{key}'")
    unknown = set(spec) - {"base", "metric", "threshold", "seeds", "runs", "tables"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    runs = spec["runs"]
    if not isinstance(runs, dict) or not runs:
        raise ConfigError(f"{where}: 'runs' must map variant names to config overrides")
    for name, variant in runs.items():
        if not isinstance(variant, dict):
            raise ConfigError(f"{where}: run '{name}' must be a mapping, got {variant!r}")
        for dep in variant.get("_after", []):
            if dep not in runs:
                raise ConfigError(f"{where}: run '{name}' waits for unknown run '{dep}'")
    for table, names in (spec.get("tables") or {}).items():
        missing = [n for n in names if n not in runs]
        if missing:
            raise ConfigError(f"{where}: table '{table}' names unknown runs {missing}")
    return spec


def plan(path: str | Path, section: str, out_root: str | Path) -> list[Run]:
    """Every run of ``section``, in file order (a variant's seeds together)."""
    spec = load_section(path, section)
    base_path = Path(path).parent / spec["base"]
    base = read_yaml(base_path)
    section_dir = Path(out_root) / section
    runs = []
    for variant, override in spec["runs"].items():
        seeds = override.get("_seeds", spec.get("seeds", [0]))
        body = {k: v for k, v in override.items() if k not in RESERVED}
        for seed in seeds:
            out = section_dir / f"{variant}_s{seed}"
            cfg = deep_merge(base, _substitute(body, {"section_dir": str(section_dir), "seed": str(seed)}))
            cfg["seed"] = int(seed)
            runs.append(Run(section, variant, int(seed), cfg, out, tuple(override.get("_after", ()))))
    return runs


def interleave(runs: list[Run]) -> list[Run]:
    """Training order: runs that others wait for first, then seed by seed (every variant of seed 0, of every
    section, before any of seed 1), so that a stopped experiment has comparable partial results."""
    needed = {(r.section, dep) for r in runs for dep in r.after}
    sections = list(dict.fromkeys(r.section for r in runs))
    return sorted(runs, key=lambda r: ((r.section, r.variant) not in needed, r.seed, sections.index(r.section)))


def _launch(run: Run, threads: int) -> subprocess.Popen:
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / FAILED).unlink(missing_ok=True)                       # a failed run is tried again
    cfg_path = run.out / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(run.config, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "glassbox_trainer.cli", "--config", str(cfg_path), "--out", str(run.out), "--resume"]
    with open(run.out / "train.out", "w") as log:                  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def execute(runs: list[Run], jobs: int = 1, threads: int = 1, poll_s: float = 2.0) -> dict[str, str]:
    """Train every run not already done, ``jobs`` at a time; returns ``{run name: "done" | "failed: ..."}``.

    A run starts once every run of the variants in its ``_after`` list has finished; a run whose prerequisite
    failed is skipped with that reason.
    """
    status: dict[str, str] = {r.name: "done" for r in runs if r.done}
    pending = [r for r in runs if not r.done]
    active: dict[str, tuple[Run, subprocess.Popen, float]] = {}

    def variant_state(section: str, variant: str) -> str:
        states = [status.get(r.name, "") for r in runs if r.section == section and r.variant == variant]
        if any(s.startswith(("failed", "skipped")) for s in states):
            return "failed"
        return "done" if all(s == "done" for s in states) else "waiting"

    while pending or active:
        for name, (run, proc, t0) in list(active.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del active[name]
            tail = (run.out / "train.out").read_text(errors="replace").strip().splitlines()[-1:] or [""]
            if rc == 0:
                result = _last_json(run.out / "train.out")
                (run.out / DONE).write_text(json.dumps({**result, "wall_s": time.time() - t0}, indent=1))
                status[name] = "done"
            else:
                status[name] = f"failed: exit {rc}: {tail[0][:300]}"
                (run.out / FAILED).write_text(status[name] + "\n")
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {status[name]}", flush=True)
        for run in list(pending):
            if len(active) >= jobs:
                break
            deps = [variant_state(run.section, v) for v in run.after]
            if "failed" in deps:
                status[run.name] = f"skipped: a prerequisite of {run.name} failed"
                pending.remove(run)
                continue
            if all(d == "done" for d in deps):
                pending.remove(run)
                active[run.name] = (run, _launch(run, threads), time.time())
                print(f"[{time.strftime('%H:%M:%S')}] {run.name}: started", flush=True)
        if (pending or active) and not (active or any(
                all(variant_state(r.section, v) == "done" for v in r.after) for r in pending)):
            raise RuntimeError("experiment runs wait on each other in a cycle")
        time.sleep(poll_s if active else 0)
    return status


def _last_json(path: Path) -> dict:
    """The JSON object ``glassbox-train`` prints last (its result)."""
    text = path.read_text(errors="replace")
    start = text.rfind("\n{")
    start = 0 if start < 0 and text.startswith("{") else start + 1
    try:
        return json.loads(text[start:])
    except (json.JSONDecodeError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------ summary
def read_eval(path: Path, metric: str) -> list[tuple[int, float]]:
    """(step, metric) for every evaluation row of a run's ``eval.csv``."""
    from glassbox_trainer.train import read_log
    rows = read_log(path) if path.exists() else []
    if rows and metric not in rows[0]:
        raise ConfigError(f"{path}: no column '{metric}' (columns: {', '.join(rows[0])})")
    return [(int(r["step"]), r[metric]) for r in rows]


def steps_to_threshold(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """The first evaluation step whose metric is at least ``threshold``; None if never."""
    for step, value in curve:
        if value >= threshold:
            return step
    return None


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of mean(a) == mean(b); None with fewer than two values per side."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def entropy_change_variance(run: Run, batches: int = 4) -> float:
    """Eloss L1 (variance of per-dimension entropy changes, summed over the task's Eloss groups) of a trained run,
    averaged over the first ``batches`` validation batches, with the model in eval mode."""
    import torch

    from glassbox_trainer.config import ElossConfig, train_config_from_dict
    from glassbox_trainer.task import build_task
    from glassbox_trainer.train import eloss_terms, eval_loader, load_state_dict_file

    cfg = train_config_from_dict(run.config, str(run.out / "config.yaml"))
    task = build_task(cfg.task, cfg.task_cfg)
    model = task.build_model(cfg.model_size)
    model.load_state_dict(load_state_dict_file(run.out / "model.pt"))
    model.eval()
    _, val = task.datasets()
    probe = ElossConfig(per_dim=True)
    # the model's own groups where it declares them (sizes differ in depth), else the task's
    groups = [list(g) for g in (model.eloss_groups() if hasattr(model, "eloss_groups") else task.eloss_groups)]
    values = []
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i, batch in enumerate(eval_loader(task, val, cfg)):
            if i >= batches:
                break
            torch.manual_seed(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
            _, _, out = task.loss(model, batch)
            present = [[n for n in g if n in out["features"]] for g in groups]     # e.g. a teacher without a stage
            values.append(float(eloss_terms(out["features"], [g for g in present if len(g) >= 2],
                                            probe)["eloss_var"]))
    return sum(values) / len(values)


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": m, "std": sd, "n": len(values)}


def summarise(path: str | Path, section: str, out_root: str | Path, with_entropy: bool = True) -> dict:
    """Per-variant statistics of a finished (or partly finished) experiment section (see the module docstring)."""
    spec = load_section(path, section)
    runs = plan(path, section, out_root)
    from glassbox_trainer.task import task_class
    first = runs[0].config["task"]
    task_name = first if isinstance(first, str) else first.get("name", Path(spec["base"]).stem)
    metric = spec.get("metric") or task_class(task_name).metric
    threshold = spec.get("threshold")
    variants: dict[str, dict] = {}
    for run in runs:
        v = variants.setdefault(run.variant, {"runs": {}})
        key = f"{run.variant}_s{run.seed}"
        rec: dict[str, Any] = {"seed": run.seed}
        if not run.done:
            failed = run.out / FAILED
            rec["status"] = failed.read_text().strip() if failed.exists() else "unfinished"
            v["runs"][key] = rec
            continue
        curve = read_eval(run.out / "eval.csv", metric)
        result = json.loads((run.out / DONE).read_text())
        rec.update(status="done", curve=curve, final=curve[-1][1] if curve else None,
                   best=max(c[1] for c in curve) if curve else None,
                   mean_over_training=sum(c[1] for c in curve) / len(curve) if curve else None,
                   steps_to_threshold=steps_to_threshold(curve, threshold) if threshold is not None else None,
                   wall_s=result.get("wall_s"))
        if with_entropy:
            rec["dh_variance"] = entropy_change_variance(run)
        v["runs"][key] = rec
    for v in variants.values():
        done = [r for r in v["runs"].values() if r["status"] == "done"]
        for key in ("final", "best", "mean_over_training", "dh_variance", "wall_s"):
            v[key] = _stats([r[key] for r in done if r.get(key) is not None])
        reached = [r["steps_to_threshold"] for r in done if r.get("steps_to_threshold") is not None]
        v["steps_to_threshold"] = {**_stats([float(s) for s in reached]), "reached": len(reached), "of": len(done)}
        v["failed"] = sum(r["status"].startswith("failed") for r in v["runs"].values())
        v["unfinished"] = sum(r["status"] == "unfinished" for r in v["runs"].values())
    tables = spec.get("tables") or {"all": list(variants)}
    for names in tables.values():
        ref = [r["final"] for r in variants[names[0]]["runs"].values() if r.get("final") is not None]
        for name in names[1:]:
            vals = [r["final"] for r in variants[name]["runs"].values() if r.get("final") is not None]
            variants[name].setdefault("p_vs", {})[names[0]] = welch_p(vals, ref)
    return {"section": section, "task": task_name, "metric": metric, "threshold": threshold,
            "base": str(spec["base"]), "variants": variants, "tables": tables}


def _fmt(stat: dict, digits: int = 3) -> str:
    if stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown(summary: dict) -> str:
    """One Markdown table per ``tables`` entry."""
    lines = []
    for title, names in summary["tables"].items():
        m, thr = summary["metric"], summary["threshold"]
        lines += [f"**{summary['section']}: {title}** ({m}; mean ± std over seeds)", "",
                  f"| run | seeds | final {m} | best | mean during training | steps to {thr} (reached) "
                  f"| var ΔH (nats/dim)² | p vs {names[0]} |",
                  "|---|---|---|---|---|---|---|---|"]
        for name in names:
            v = summary["variants"][name]
            s = v["steps_to_threshold"]
            steps = f"{_fmt(s, 0)} ({s['reached']}/{s['of']})" if s["of"] else "–"
            p = v.get("p_vs", {}).get(names[0])
            n_done = v["final"]["n"]
            failed = (f", {v['failed']} failed" if v["failed"] else "") + \
                (f", {v['unfinished']} unfinished" if v["unfinished"] else "")
            lines.append(f"| {name} | {n_done}{failed} | {_fmt(v['final'])} | {_fmt(v['best'])} "
                         f"| {_fmt(v['mean_over_training'])} | {steps} | {_fmt(v['dh_variance'], 5)} "
                         f"| {'–' if p is None else f'{p:.2g}'} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, png: Path) -> None:
    """Validation metric against step (mean over seeds, band = min..max) per table, and var ΔH per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tables = summary["tables"]
    colours = {name: f"C{i % 10}" for i, name in enumerate(summary["variants"])}   # one colour per run everywhere
    fig, axes = plt.subplots(1, len(tables) + 1, figsize=(5.5 * (len(tables) + 1), 4.2))
    for ax, (title, names) in zip(axes, tables.items()):
        for name in names:
            curves = [r["curve"] for r in summary["variants"][name]["runs"].values() if r.get("curve")]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            steps = np.array([c[0] for c in curves[0][:n]])
            vals = np.array([[c[i][1] for i in range(n)] for c in curves])
            ax.plot(steps, vals.mean(0), color=colours[name], label=f"{name} (n={len(curves)})")
            ax.fill_between(steps, vals.min(0), vals.max(0), color=colours[name], alpha=0.15)
        if summary["threshold"] is not None:
            ax.axhline(summary["threshold"], color="grey", ls=":", lw=1)
        ax.set(title=f"{summary['section']}: {title}", xlabel="step", ylabel=summary["metric"])
        ax.legend(fontsize=8)
    ax = axes[-1]
    names = list(summary["variants"])
    for i, name in enumerate(names):
        vals = [r["dh_variance"] for r in summary["variants"][name]["runs"].values() if "dh_variance" in r]
        ax.scatter([i] * len(vals), vals, s=18, color=colours[name])
        if vals:
            ax.hlines(np.mean(vals), i - 0.3, i + 0.3, color="k")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set(title="variance of ΔH on validation (Eloss L1)", ylabel="(nats per dim)²")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m glassbox_trainer.experiment", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="experiment file, e.g. config/train/experiments/eloss.yaml")
    p.add_argument("--section", required=True, nargs="+", help="studies in the file (e.g. lidar segmentation)")
    p.add_argument("--out", default="runs/experiments", help="run folders go to <out>/<section>/<variant>_s<seed>")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    p.add_argument("--only", nargs="*", default=None, help="train only these variants")
    p.add_argument("--summarise", action="store_true", help="summarise finished runs instead of training")
    p.add_argument("--docs", default="docs/experiments", help="where --summarise writes JSON, Markdown and PNG")
    args = p.parse_args(argv)
    if args.summarise:
        docs = Path(args.docs)
        docs.mkdir(parents=True, exist_ok=True)
        for section in args.section:
            summary = summarise(args.config, section, args.out)
            (docs / f"{section}.json").write_text(json.dumps(summary, indent=1))
            table = markdown(summary)
            (docs / f"{section}.md").write_text(table)
            plot(summary, docs / f"{section}.png")
            print(table)
        return 0
    runs = interleave([r for section in args.section for r in plan(args.config, section, args.out)])
    if args.only:
        runs = [r for r in runs if r.variant in args.only]
    status = execute(runs, args.jobs, args.threads)
    failed = {k: v for k, v in status.items() if v != "done"}
    for name, why in failed.items():
        print(f"{name}: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
