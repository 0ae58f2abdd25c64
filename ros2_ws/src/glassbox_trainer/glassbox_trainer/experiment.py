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

``--summarise`` (``glassbox_trainer.experiment_summary``) reads the runs back and writes ``<section>.json``, a
Markdown table and plots into ``--docs``: per variant, over seeds, the final and best metric, the mean metric over
all evaluations (the Eloss paper's "average accuracy during training"), the step at which ``threshold`` was first
reached, training time, and the variance of the layer-to-layer entropy changes (Eloss's L1 per group, nats per
dimension, summed over the task's Eloss groups) measured on validation batches for every run alike, whatever its
loss was. Each variant is compared with the table's first one by Welch's t-test on the final metric.

    python -m glassbox_trainer.experiment --config config/train/experiments/eloss.yaml --section lidar \\
        --out runs/experiments --jobs 2
    python -m glassbox_trainer.experiment --config config/train/experiments/eloss.yaml --section lidar \\
        --out runs/experiments --summarise --docs docs/experiments
"""
from __future__ import annotations

import argparse
import copy
import json
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
        from glassbox_trainer.experiment_summary import markdown, plot, summarise

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
