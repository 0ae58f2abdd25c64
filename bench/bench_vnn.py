"""VNN benchmark of the seed: the Epistemic Neural Network regression testbed, KL of each agent's predictive to
the exact posterior over input dimension x data ratio x noise, for identity and Leaky-ReLU VNNs, MC dropout,
Bayes by Backprop and a deep ensemble. Method and agents: ``glassbox.vnn_eval``; results: docs/vnn.md.

Writes ``bench/results/vnn.json`` (``vnn_tiny.json`` with ``--tiny``) and prints the tables of docs/vnn.md.
Runs on one CPU thread. Run: ``python bench/bench_vnn.py [--tiny]`` (full: ~20-25 min on one core).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_results  # noqa: E402

from glassbox.vnn_eval import TINY, SweepConfig, run_testbed, summarise  # noqa: E402

NAMES = {"vnn": "VNN (identity)", "vnn_lrelu": "VNN Leaky ReLU after sampling",
         "vnn_lrelu_mean": "VNN Leaky ReLU on the mean", "dropout": "MC dropout", "bbb": "Bayes by Backprop",
         "ensemble": "ensemble (10, random priors)"}


def verdict(agents: dict) -> dict:
    """The seed's claim, identity VNN < Leaky-ReLU VNN < BBB and MC dropout in KL, on the mean KL over the
    settings and on the mean rank; the Leaky-ReLU VNN is the better of the two placements (the seed's 'best')."""
    out = {}
    for metric in ("mean_kl", "mean_rank"):
        lrelu = min(("vnn_lrelu", "vnn_lrelu_mean"), key=lambda a: agents[a][metric])
        v = {a: agents[a][metric] for a in ("vnn", lrelu, "bbb", "dropout")}
        out[metric] = {"best_lrelu_vnn": lrelu, "identity_below_lrelu": v["vnn"] < v[lrelu],
                       "lrelu_below_bbb": v[lrelu] < v["bbb"], "lrelu_below_dropout": v[lrelu] < v["dropout"]}
        out[metric]["claim_holds"] = all(val for k, val in out[metric].items() if k != "best_lrelu_vnn")
    return out


def markdown(summary: dict) -> str:
    agents = list(summary["agents"])
    lines = ["| d | ratio | noise | " + " | ".join(agents) + " |", "|---" * (3 + len(agents)) + "|"]
    for t in summary["settings"]:
        best = min(agents, key=lambda a: t[a])
        cells = [(f"**{t[a]:.3g}**" if a == best else f"{t[a]:.3g}") + f" ± {t[a + '_sd']:.2g}" for a in agents]
        lines.append(f"| {t['input_dim']} | {t['data_ratio']:g} | {t['noise_std']:g} | " + " | ".join(cells) + " |")
    dims = list(next(iter(summary["agents"].values()))["mean_kl_by_dim"])
    lines += ["", "| agent | mean KL | median KL | mean rank | settings won | mean reverse KL | "
              + " | ".join(f"mean KL d={d}" for d in dims) + " |", "|---" * (6 + len(dims)) + "|"]
    for a, s in summary["agents"].items():
        lines.append(f"| {NAMES[a]} | {s['mean_kl']:.3f} | {s['median_kl']:.3f} | {s['mean_rank']:.2f} | "
                     f"{s['settings_won']} | {s['mean_kl_reverse']:.3f} | "
                     + " | ".join(f"{s['mean_kl_by_dim'][d]:.3f}" for d in dims) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="one small problem family (the CI configuration)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = TINY if args.tiny else SweepConfig()
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows = run_testbed(cfg, progress=lambda m: print(m, flush=True))
    summary = summarise(rows)
    print_table([{"agent": a, **{k: v for k, v in s.items() if k != "mean_kl_by_dim"}}
                 for a, s in summary["agents"].items()],
                ["agent", "mean_kl", "median_kl", "mean_rank", "settings_won", "mean_kl_reverse"])
    claim = verdict(summary["agents"])
    write_results("vnn_tiny" if args.tiny else "vnn", rows, config=dataclasses.asdict(cfg), threads=1,
                  wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(time.process_time() - cpu0, 1),
                  summary=summary, claim=claim)
    print(markdown(summary))
    print(claim)


if __name__ == "__main__":
    main()
