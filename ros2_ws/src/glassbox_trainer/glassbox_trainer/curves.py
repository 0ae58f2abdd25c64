"""Per-layer entropy curves during training and the FMCS convergence report of a finished run.

Every ``entropy_log.every`` steps (0: at every evaluation) the entropy of every feature map on a fixed
validation batch is logged to ``entropy.csv`` and plotted to ``entropy_curves.png``; at the end,
``fmcs_report`` writes ``fmcs.json``: the loss curve's FMCS phase markers and the phase in which each
module's entropy settled.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from glassbox_trainer.config import TrainConfig
from glassbox_trainer.errors import need_output
from glassbox_trainer.logs import ENTROPY_LOG, TRAIN_LOG, read_log
from glassbox_trainer.task import Task


def probe_config(cfg: TrainConfig):
    """The ``glassbox.entropy.ProbeConfig`` of the config's ``entropy_log`` section."""
    from glassbox.entropy import ProbeConfig
    e = cfg.entropy_log
    return ProbeConfig(estimator=e.estimator, k=e.k, sample_mode=e.sample_mode, max_samples=e.max_samples,
                       max_dim=e.max_dim)


def entropy_features(features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The feature maps an entropy profile is taken over: every (B, F) or (B, C, ...) tensor, as float32."""
    return {k: v.float() for k, v in features.items() if isinstance(v, Tensor) and v.dim() >= 2}


def entropy_rows(task: Task, model: nn.Module, batch: dict, cfg: TrainConfig, step: int) -> list[dict[str, Any]]:
    """Per-layer entropy of every feature map on ``batch`` (eval mode, no grad) as log rows."""
    from glassbox.entropy import profile_from_features
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, _, out = task.loss(model, batch)
        profile = profile_from_features(entropy_features(need_output(out, "features", "entropy logging")),
                                        probe_config(cfg))
    finally:
        model.train(was)
    return [{"step": step, "layer": name, "entropy_nats": float(h), "delta_nats": float(dh)}
            for name, h, dh in zip(profile.layer_names, profile.entropy_nats, profile.delta_nats)]


def plot_entropy_curves(csv_path: Path, png_path: Path) -> None:
    """Entropy (nats) of every layer against the step, one line per layer, from ``entropy.csv``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, (ax_h, ax_d) = plt.subplots(1, 2, figsize=(11, 4))
    for layer in layers:
        pts = [(int(r["step"]), float(r["entropy_nats"]), float(r["delta_nats"])) for r in rows if r["layer"] == layer]
        steps, hs, ds = zip(*pts)
        ax_h.plot(steps, hs, marker=".", label=layer)
        ax_d.plot(steps, ds, marker=".", label=layer)
    ax_h.set(xlabel="step", ylabel="entropy (nats)", title="per-layer entropy")
    ax_d.set(xlabel="step", ylabel="change from previous layer (nats)", title="per-layer entropy change")
    ax_h.legend(fontsize=7)
    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def fmcs_report(out_dir: Path, block_steps: int, num_phases: int = 10, mu: float = 1e-3,
                module_mu: float = 1e-2) -> dict[str, Any]:
    """FMCS phase markers of the run (seed 002) and the phase in which every module's entropy settled.

    Where this differs from the paper: its runs are epoch-based and its per-module score comes from a trained
    FMCE-Net classifier. Here one point of the loss curve is the mean task loss over ``block_steps`` steps,
    ``mu`` is relative to the first smoothed loss (losses of different tasks have different scales), and a
    module's score is the phase k (1..K) whose marker interval contains the first logged step at which the
    module's entropy curve settles (CQI of the unsmoothed curve, normalised by its largest magnitude, at most
    ``module_mu``); ``None`` when it has not settled. Written to ``fmcs.json``.
    """
    from glassbox.entropy import FmcsError, fmcs, smooth_losses

    rows = read_log(out_dir / TRAIN_LOG)
    task_loss = np.array([r["task"] for r in rows], dtype=np.float64)
    n_blocks = task_loss.size // block_steps
    report: dict[str, Any] = {"block_steps": block_steps, "num_phases": num_phases}
    if n_blocks < 3:
        report["error"] = f"{task_loss.size} steps give {n_blocks} loss points of {block_steps} steps; need 3"
        return report
    curve = task_loss[:n_blocks * block_steps].reshape(n_blocks, block_steps).mean(1)
    try:
        res = fmcs(curve, num_phases=num_phases, mu=mu * float(smooth_losses(curve)[0]), window=3,
                   on_no_convergence="argmin")
    except (FmcsError, ValueError) as exc:     # ValueError: glassbox.entropy.fmcs on a curve peaking at its end
        report["error"] = f"{type(exc).__name__}: {exc}"
        return report
    marker_steps = (res.markers * block_steps).astype(np.int64)
    report.update(converged=bool(res.converged), marker_steps=[int(m) for m in marker_steps])
    ent_path = out_dir / ENTROPY_LOG
    report["modules"] = module_phases(ent_path, marker_steps, num_phases, module_mu) if ent_path.exists() else {}
    return report


def module_phases(entropy_csv: Path, marker_steps: np.ndarray, num_phases: int,
                  module_mu: float) -> dict[str, dict[str, int | None]]:
    """Per layer of ``entropy.csv``: the first step at which its entropy settled and that step's FMCS phase."""
    from glassbox.entropy import cqi

    with open(entropy_csv, newline="") as fh:
        ent = list(csv.DictReader(fh))
    modules: dict[str, dict[str, int | None]] = {}
    for layer in dict.fromkeys(r["layer"] for r in ent):
        pts = [(int(r["step"]), float(r["entropy_nats"])) for r in ent if r["layer"] == layer]
        steps = np.array([p[0] for p in pts])
        h = np.array([p[1] for p in pts])
        # no EMA here: on a few logged points its warm-up lag would hide the early changes
        settled = np.flatnonzero(cqi(h / max(np.abs(h).max(), 1e-12), window=3) <= module_mu)
        if settled.size == 0:
            modules[layer] = {"settled_step": None, "phase": None}
            continue
        step = int(steps[settled[0]])
        modules[layer] = {"settled_step": step,
                          "phase": int(min(num_phases, np.searchsorted(marker_steps, step) + 1))}
    return modules
