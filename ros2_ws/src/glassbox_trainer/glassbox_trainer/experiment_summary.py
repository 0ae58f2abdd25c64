"""Summary of a controlled training experiment (``glassbox_trainer.experiment``): statistics, table, plots.

``summarise`` reads the finished runs of one section back: per variant, over seeds, the final and best metric,
the mean metric over all evaluations, the step at which ``threshold`` was first reached, training time, the
variance of the layer-to-layer entropy changes on validation batches, and Welch's t-test of each variant
against its table's first one. ``markdown`` and ``plot`` render it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from glassbox.config import ConfigError
from glassbox_trainer.experiment import DONE, FAILED, Run, load_section, plan


def read_eval(path: Path, metric: str) -> list[tuple[int, float]]:
    """(step, metric) for every evaluation row of a run's ``eval.csv``."""
    from glassbox_trainer.logs import read_log
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
    from glassbox_trainer.checkpoint import load_state_dict_file
    from glassbox_trainer.data import eval_loader
    from glassbox_trainer.step import eloss_terms

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
