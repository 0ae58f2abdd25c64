"""VNN benchmark of the seed: the Epistemic Neural Network regression testbed, KL of each agent's predictive to
the exact posterior over input dimension x data ratio x noise, for identity and Leaky-ReLU VNNs, MC dropout,
Bayes by Backprop and a deep ensemble. Method and agents: ``glassbox.vnn_eval``; results: docs/vnn.md.

Writes ``bench/results/vnn.json`` (``vnn_tiny.json`` with ``--tiny``) and prints the tables of docs/vnn.md.
Runs on one CPU thread. Run: ``python bench/bench_vnn.py [--tiny] [--resummarise]`` (full: 26 CPU-minutes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_results  # noqa: E402

from glassbox.vnn_eval import TINY, SweepConfig, make_problems, run_case, run_testbed, summarise  # noqa: E402

NAMES = {"vnn": "VNN (identity)", "vnn_lrelu": "VNN Leaky ReLU after sampling",
         "vnn_lrelu_mean": "VNN Leaky ReLU on the mean", "dropout": "MC dropout", "bbb": "Bayes by Backprop",
         "ensemble": "ensemble (10, random priors)"}


#: one slice of the sweep (d = 100, ratio 10, every noise, seeds 0-2) re-run with other hyper-parameters
SENSITIVITY = [("vnn", {}), ("vnn", {"steps": 3000}), ("vnn_lrelu_mean", {}), ("vnn_lrelu_mean", {"steps": 3000}),
               ("vnn_lrelu_mean", {"vnn_index_samples": 100}), ("dropout", {}), ("dropout", {"dropout_rate": 0.05}),
               ("dropout", {"dropout_rate": 0.2}), ("bbb", {}), ("bbb", {"bbb_init_std": 0.1}),
               ("bbb", {"bbb_init_std": 1.0}), ("bbb", {"bbb_init_std": 0.01}), ("ensemble", {}),
               ("ensemble", {"ensemble_prior_scale": 0.0})]


def sensitivity(input_dim: int = 100, data_ratio: float = 10) -> list[dict]:
    base = SweepConfig()
    problems = [(seed, p) for seed in base.seeds
                for p in make_problems(input_dim, data_ratio, base.noise_stds, seed, base)]
    rows = []
    for agent, overrides in SENSITIVITY:
        cfg = dataclasses.replace(base, **overrides)
        kls = {}
        for seed, p in problems:
            kls.setdefault(p.noise_std, []).append(run_case(p, agent, cfg, seed)["kl"])
        rows.append({"agent": agent, "overrides": str(overrides or "defaults"),
                     **{f"kl_noise_{n:g}": statistics.fmean(v) for n, v in kls.items()},
                     "mean_kl": statistics.fmean(x for v in kls.values() for x in v)})
        print(rows[-1], flush=True)
    return rows


def verdict(summary: dict) -> dict:
    """The seed's claim, identity VNN < Leaky-ReLU VNN < BBB and MC dropout in KL, judged on the mean KL over the
    settings, the mean rank per case, and the mean rank by the reverse KL; the Leaky-ReLU VNN is the better of the
    two placements on each measure (the seed reports the best of that family). ``wins``: cases (of all settings
    and seeds) where the first agent's KL is lower."""
    agents, out = summary["agents"], {}
    for metric in ("mean_kl", "mean_rank", "mean_rank_reverse"):
        lrelu = min(("vnn_lrelu", "vnn_lrelu_mean"), key=lambda a: agents[a][metric])
        v = {a: agents[a][metric] for a in ("vnn", lrelu, "bbb", "dropout")}
        parts = {"identity_below_lrelu": v["vnn"] < v[lrelu], "lrelu_below_bbb": v[lrelu] < v["bbb"],
                 "lrelu_below_dropout": v[lrelu] < v["dropout"]}
        out[metric] = {"best_lrelu_vnn": lrelu, **parts, "claim_holds": all(parts.values())}
    w = summary["wins"]
    out["wins"] = {f"{a} < {b}": f"{w[a][b]}/{summary['cases']}" for a, b in (
        ("vnn", "vnn_lrelu"), ("vnn", "vnn_lrelu_mean"), ("vnn_lrelu", "bbb"), ("vnn_lrelu_mean", "bbb"),
        ("vnn_lrelu", "dropout"), ("vnn_lrelu_mean", "dropout"))}
    return out


def markdown(summary: dict) -> str:
    agents = list(summary["agents"])
    lines = ["| d | ratio | noise | " + " | ".join(agents) + " |", "|---" * (3 + len(agents)) + "|"]
    for t in summary["settings"]:
        best = min(agents, key=lambda a: t[a])
        cells = [(f"**{t[a]:.3g}**" if a == best else f"{t[a]:.3g}") + f" ± {t[a + '_sd']:.2g}" for a in agents]
        lines.append(f"| {t['input_dim']} | {t['data_ratio']:g} | {t['noise_std']:g} | " + " | ".join(cells) + " |")
    dims = list(next(iter(summary["agents"].values()))["mean_kl_by_dim"])
    lines += ["", "| agent | mean KL | median KL | mean rank | settings won | "
              + " | ".join(f"mean KL d={d}" for d in dims) + " | median reverse KL | mean rank, reverse KL |",
              "|---" * (7 + len(dims)) + "|"]
    for a, s in summary["agents"].items():
        lines.append(f"| {NAMES[a]} | {s['mean_kl']:.2f} | {s['median_kl']:.2f} | {s['mean_rank']:.2f} | "
                     f"{s['settings_won']} | " + " | ".join(f"{s['mean_kl_by_dim'][d]:.2f}" for d in dims)
                     + f" | {s['median_kl_reverse']:.2f} | {s['mean_rank_reverse']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="one small problem family (the CI configuration)")
    ap.add_argument("--resummarise", action="store_true",
                    help="recompute the summary and verdict from the rows already in the results file")
    ap.add_argument("--sensitivity", action="store_true",
                    help="only the hyper-parameter slice (d = 100, ratio 10): bench/results/vnn_sensitivity.json")
    args = ap.parse_args()
    if args.sensitivity:
        torch.set_num_threads(1)
        cpu0 = time.process_time()
        rows = sensitivity()
        write_results("vnn_sensitivity", rows, input_dim=100, data_ratio=10, seeds=list(SweepConfig().seeds),
                      threads=1, cpu_s=round(time.process_time() - cpu0, 1))
        print_table(rows, list(rows[0]))
        return
    name = "vnn_tiny" if args.tiny else "vnn"
    if args.resummarise:
        old = json.loads((RESULTS / f"{name}.json").read_text())
        rows, extra = old["rows"], {k: old[k] for k in ("config", "threads", "wall_s", "cpu_s")}
        extra["date_of_rows"] = old.get("date_of_rows", old["date"])
    else:
        torch.set_num_threads(1)
        cfg = TINY if args.tiny else SweepConfig()
        t0, cpu0 = time.perf_counter(), time.process_time()
        rows = run_testbed(cfg, progress=lambda m: print(m, flush=True))
        extra = {"config": dataclasses.asdict(cfg), "threads": 1, "wall_s": round(time.perf_counter() - t0, 1),
                 "cpu_s": round(time.process_time() - cpu0, 1)}
    summary = summarise(rows)
    print_table([{"agent": a, **{k: v for k, v in s.items() if k != "mean_kl_by_dim"}}
                 for a, s in summary["agents"].items()],
                ["agent", "mean_kl", "median_kl", "mean_rank", "settings_won", "median_kl_reverse",
                 "mean_rank_reverse"])
    claim = verdict(summary)
    write_results(name, rows, **extra, summary=summary, claim=claim)
    print(markdown(summary))
    print(json.dumps(claim, indent=1))


if __name__ == "__main__":
    main()
