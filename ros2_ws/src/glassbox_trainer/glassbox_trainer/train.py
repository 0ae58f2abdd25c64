"""The training engine: config -> build -> step loop -> evaluate -> atomic checkpoints, for any task.

``train(cfg, out_dir, resume=False)`` reads top to bottom: build the task, model, optional teacher and loss
terms; then for every step take the learning rate from the pure ``get_lr(step)``, compute the named loss terms,
combine them with a :class:`~glassbox_trainer.losses.WeightedSum`, step the optimiser, log every term to
``train_log.csv``, evaluate under ``torch.no_grad()`` every ``eval_every`` steps (``eval.csv``), log per-layer
entropy curves (``entropy.csv`` and ``entropy_curves.png``) and save ``last.pt`` atomically every
``ckpt_every`` steps.

Reproducibility: the data order of step s depends only on (seed, epoch of s) (a ``DistributedSampler`` with
``set_epoch``), so a resumed run skips the consumed batches of the current epoch without loading them; the
checkpoint holds the model, optimiser, scheduler, AMP scaler, the Python/numpy/torch RNG states of every rank,
the step and the config. Evaluation and entropy logging save and restore the RNG states, so they never change
the training numbers. Log rows after the checkpoint's step (written before a crash) are dropped on resume, so
a run killed with SIGKILL at any moment and resumed writes the same log as an uninterrupted run.

Multi-process: launched by ``torchrun``, every process trains on its shard of each global batch; gradients
are averaged by ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA). The wrapped module computes all loss
terms inside its forward, so any task method (``forward_features``, ``forward_head``) may be called. Logged
values are averaged over processes; only rank 0 writes files. Terms that are linear in the batch (task
losses, KD, SRM) give the same gradient as one process with the whole batch; Eloss, a non-linear function of
batch-mean entropies, is computed per process shard (like BatchNorm statistics), and MOSAKD's neighbours are
searched within each shard. AMP (bfloat16 autocast, float16 with a
``GradScaler`` where bfloat16 is unsupported) is used on CUDA only.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from glassbox.config import to_dict
from glassbox_trainer.config import ElossConfig, ScheduleConfig, TrainConfig
from glassbox_trainer.losses import KDLoss, MOSAKDLoss, SRMLoss, WeightedSum
from glassbox_trainer.task import Task, build_task

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"


class TrainError(RuntimeError):
    """A run cannot start or continue (bad resume state, missing teacher, task outputs missing)."""


# ----------------------------------------------------------------------------------------------- schedules
def lr_factor(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then constant / cosine / step decay."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    marks = [m * total_steps if m < 1 else m for m in cfg.milestones]
    return cfg.gamma ** sum(step >= m for m in marks)


def get_lr(step: int, total_steps: int, base_lr: float, cfg: ScheduleConfig) -> float:
    """Learning rate at ``step``: a pure function of the step, so a resumed run continues the same curve."""
    return base_lr * lr_factor(step, total_steps, cfg)


def eloss_scale(step: int, cfg: ElossConfig) -> float:
    """Multiplier of the Eloss weights at ``step`` (``linear_warmup``: 0 -> 1 over ``warmup_steps``)."""
    if cfg.schedule == "linear_warmup" and cfg.warmup_steps > 0:
        return min(1.0, step / cfg.warmup_steps)
    return 1.0


# ------------------------------------------------------------------------------------- processes, RNG, I/O
@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: rank, world size and device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistEnv:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"device '{device}' requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank, world, local_rank, dev)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def preserved_rng():
    """Run a block (evaluation, logging) without changing any RNG stream of the training loop."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class CsvLog:
    """An append-only CSV file with a fixed header (from the first row); flushed on :meth:`sync`."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None
        self._writer: csv.DictWriter | None = None

    def write(self, row: Mapping[str, Any]) -> None:
        if self._writer is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            if exists:
                with open(self.path, newline="") as fh:
                    header = next(csv.reader(fh))
            else:
                header = list(row)
            self._fh = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=header, extrasaction="ignore", restval="")
            if not exists:
                self._writer.writeheader()
        self._writer.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in row.items()})

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh, self._writer = None, None


def truncate_log(path: Path, max_step: int) -> None:
    """Keep the header and the complete rows with ``step <= max_step`` (rows a crash left behind go)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, keep = rows[0], [rows[0]]
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        try:
            if int(row[0]) <= max_step:
                keep.append(row)
        except ValueError:
            continue
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)
    os.replace(tmp, path)


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a CSV log as dicts of floats (empty cells skipped)."""
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


# ------------------------------------------------------------------------------------------ loss terms
def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _need(outputs: Mapping[str, Any], key: str, why: str) -> Any:
    if key not in outputs:
        raise TrainError(f"the task's loss() outputs have no '{key}', which {why} needs "
                         f"(outputs: {', '.join(outputs)})")
    return outputs[key]


def eloss_terms(features: Mapping[str, Tensor], groups: list[list[str]], cfg: ElossConfig) -> dict[str, Tensor]:
    """``eloss_var`` (sum of L1 over groups) and ``eloss_dir`` (sum of the direction term) from feature maps."""
    from glassbox.entropy import ProbeConfig
    from glassbox.entropy.eloss import eloss_direction, eloss_direction_bounded, eloss_variance
    from glassbox.entropy.probe import layer_entropy

    probe = ProbeConfig(estimator=cfg.estimator, k=cfg.k, sample_mode=cfg.sample_mode,
                        max_samples=cfg.max_samples, max_dim=cfg.max_dim)
    var: Tensor | None = None
    direction: Tensor | None = None
    cache: dict[str, Tensor] = {}
    for group in groups:
        hs = []
        for name in group:
            if name not in cache:
                if name not in features:
                    raise TrainError(f"Eloss layer '{name}' is not among the features ({', '.join(features)})")
                h, _, d = layer_entropy(features[name].float(), probe)
                cache[name] = h / d if cfg.per_dim else h
            hs.append(cache[name])
        deltas = torch.stack(hs)
        deltas = deltas[1:] - deltas[:-1]
        v = eloss_variance(deltas, unbiased=cfg.unbiased)
        dr = eloss_direction(deltas) if cfg.variant == "printed" else eloss_direction_bounded(deltas, cfg.tau)
        var = v if var is None else var + v
        direction = dr if direction is None else direction + dr
    return {"eloss_var": var, "eloss_dir": direction}


class StepModule(nn.Module):
    """Everything with trainable parameters in one forward: the task loss and every active extra term.

    ``forward(batch, step)`` returns ``(terms, task_terms)``: named loss tensors for the WeightedSum and the
    task's own float terms. Wrapping this module (not the bare model) in DDP lets tasks call any model method.
    """

    def __init__(self, task: Task, model: nn.Module, cfg: TrainConfig, active: list[str],
                 teacher: nn.Module | None = None, srm: SRMLoss | None = None):
        super().__init__()
        self.task, self.model, self.cfg, self.active = task, model, cfg, set(active)
        self.teacher = teacher
        self.srm = srm
        d = cfg.distill
        self.kd = KDLoss(d.temperature, d.kd_mode) if "kd" in self.active else None
        self.mosakd = MOSAKDLoss(d.mosakd_layers, d.mosakd_k, d.mosakd_max_samples) \
            if "mosakd" in self.active else None
        self.groups = [list(g) for g in cfg.eloss.groups] or [list(g) for g in task.eloss_groups]

    def forward(self, batch: dict, step: int) -> tuple[dict[str, Tensor], dict[str, float]]:
        task_loss, task_terms, out = self.task.loss(self.model, batch)
        terms = {"task": task_loss}
        if "eloss_var" in self.active or "eloss_dir" in self.active:
            if not self.groups:
                raise TrainError("Eloss is enabled but the task declares no eloss_groups")
            e = eloss_terms(_need(out, "features", "Eloss"), self.groups, self.cfg.eloss)
            terms.update({k: v for k, v in e.items() if k in self.active})
        if self.teacher is not None:
            with torch.no_grad():
                _, _, t_out = self.task.loss(self.teacher, batch)
            if self.kd is not None:
                terms["kd"] = self.kd(_need(out, "logits", "KD"), _need(t_out, "logits", "KD"), out.get("valid"))
            if self.srm is not None:
                terms["srm"] = self.srm(_need(out, "features", "SRM"), _need(t_out, "features", "SRM"))
        if self.mosakd is not None:
            gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
            terms["mosakd"] = self.mosakd(_need(out, "features", "MOSAKD"), _need(out, "logits", "MOSAKD"),
                                          _need(out, "labels", "MOSAKD"), gen)
        return terms, task_terms


def build_weights(cfg: TrainConfig) -> dict[str, float]:
    """The WeightedSum weights of a config: the task loss and every configured extra term."""
    d = cfg.distill
    return {"task": 1.0, "eloss_var": cfg.eloss.weight, "eloss_dir": cfg.eloss.direction_weight,
            "kd": d.kd_weight, "srm": d.srm_weight, "mosakd": d.mosakd_weight}


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Model weights from a trainer checkpoint (its ``"model"`` entry) or a plain state dict file."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"weights file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj["model"]
    return obj


# ------------------------------------------------------------------------------------------- data order
def epoch_loader(task: Task, dataset, cfg: TrainConfig, env: DistEnv, epoch: int, skip_batches: int) -> DataLoader:
    """This process's batches of ``epoch``, starting after ``skip_batches`` already consumed ones."""
    sampler = DistributedSampler(dataset, num_replicas=env.world, rank=env.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    indices = list(sampler)[skip_batches * cfg.batch_size:]
    # A generator of its own: creating the iterator must not draw from the global RNG (resume mid-epoch).
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices, collate_fn=task.collate,
                      num_workers=cfg.num_workers, drop_last=True, generator=gen)


def eval_loader(task: Task, dataset, cfg: TrainConfig) -> DataLoader:
    return DataLoader(dataset, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                      collate_fn=task.collate, num_workers=cfg.num_workers,
                      generator=torch.Generator().manual_seed(cfg.seed))


def _mean_over_ranks(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    if env.world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                     device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return dict(zip(keys, (t / env.world).tolist()))


# ------------------------------------------------------------------------------------- entropy logging
def _probe_config(cfg: TrainConfig):
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
        profile = profile_from_features(entropy_features(_need(out, "features", "entropy logging")),
                                        _probe_config(cfg))
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
    from glassbox.entropy import FmcsError, cqi, fmcs, smooth_losses

    rows = read_log(out_dir / "train_log.csv")
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
    except FmcsError as exc:
        report["error"] = str(exc)
        return report
    marker_steps = (res.markers * block_steps).astype(np.int64)
    report.update(converged=bool(res.converged), marker_steps=[int(m) for m in marker_steps])
    modules: dict[str, Any] = {}
    ent_path = out_dir / "entropy.csv"
    if ent_path.exists():
        with open(ent_path, newline="") as fh:
            ent = list(csv.DictReader(fh))
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
    report["modules"] = modules
    return report


# ------------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, command: str | None = None) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the final validation metrics and run facts."""
    out = Path(out_dir)
    env = setup_distributed(cfg.device)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    if env.world > 1:
        dist.barrier()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed + env.rank)

    # ---- build
    task = build_task(cfg.task, cfg.task_cfg)
    train_set, val_set = task.datasets()
    model = task.build_model(cfg.model_size).to(env.device)
    criterion = WeightedSum(build_weights(cfg))
    active = criterion.active
    teacher = None
    if {"kd", "srm"} & set(active):
        if not cfg.distill.teacher:
            raise TrainError("kd_weight / srm_weight need distill.teacher (a teacher checkpoint)")
        teacher = task.build_model(cfg.distill.teacher_size)
        teacher.load_state_dict(load_state_dict_file(cfg.distill.teacher))
        teacher.to(env.device).eval().requires_grad_(False)
    steps_per_epoch = len(train_set) // (cfg.batch_size * env.world)
    if steps_per_epoch < 1:
        raise TrainError(f"the training set ({len(train_set)} items) is smaller than one global batch "
                         f"({cfg.batch_size} x {env.world})")
    total_steps = cfg.steps or cfg.epochs * steps_per_epoch
    srm = None
    if "srm" in active:
        with preserved_rng():                       # dictionary fitting must not shift the training RNG streams
            srm = _build_srm(task, model, teacher, train_set, cfg, env)
    step_module = StepModule(task, model, cfg, active, teacher, srm).to(env.device)
    params = [p for p in step_module.parameters() if p.requires_grad]
    optimizer = _build_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, cfg.schedule))
    amp_dtype = None
    if cfg.amp and env.device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    wrapped: nn.Module = step_module
    if env.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=cfg.ddp_find_unused)

    # ---- resume
    step, best = 0, -math.inf
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["world_size"] != env.world:
            raise TrainError(f"{ckpt_path} was written by {ckpt['world_size']} process(es); resume with the same "
                             f"number (got {env.world})")
        changed = sorted(k for k, v in to_dict(cfg).items() if ckpt["config"].get(k) != v)
        if changed:
            log.warning("resuming %s with a config that differs in: %s", ckpt_path, ", ".join(changed))
        step_module.load_state_dict(ckpt["step_module"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"][env.rank])
        step, best = int(ckpt["step"]), float(ckpt["best_metric"])
        if env.main:
            for name in ("train_log.csv", "eval.csv", "entropy.csv"):
                truncate_log(out / name, step)
        log.info("resumed from %s at step %d", ckpt_path, step)
    elif env.main:
        if resume:
            log.warning("--resume: no checkpoint in %s, starting from scratch", out)
        for name in (CHECKPOINT, "train_log.csv", "eval.csv", "entropy.csv", "fmcs.json", "best_model.pt"):
            (out / name).unlink(missing_ok=True)                  # a fresh run never mixes with an old one
    if env.world > 1:
        dist.barrier()

    train_log, eval_log, entropy_log = CsvLog(out / "train_log.csv"), CsvLog(out / "eval.csv"), \
        CsvLog(out / "entropy.csv")
    if env.main:
        (out / "formula.txt").write_text(criterion.formula() + "\n")
        if command:
            (out / "command.txt").write_text(command + "\n")
    val_loader = eval_loader(task, val_set, cfg)
    want_entropy = env.main and cfg.entropy_log.enabled and _entropy_available()
    probe_batch = None
    if want_entropy:
        with preserved_rng():                       # collate may draw random numbers (augmentation)
            probe_batch = _to_device(next(iter(val_loader)), env.device)

    def save() -> None:
        rngs = [None] * env.world
        if env.world > 1:
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if env.main:
            for fh_log in (train_log, eval_log, entropy_log):
                fh_log.sync()
            save_atomic({"step": step, "best_metric": best, "world_size": env.world, "config": to_dict(cfg),
                         "model": model.state_dict(), "step_module": step_module.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), "rng": rngs}, ckpt_path)

    def evaluate() -> dict[str, float]:
        nonlocal best
        metrics: dict[str, float] = {}
        if env.main:
            with preserved_rng():
                model.eval()
                with torch.no_grad():
                    metrics = {k: float(v) for k, v in task.evaluate(model, val_loader).items()}
                model.train()
            eval_log.write({"step": step, **metrics})
            if task.metric in metrics and metrics[task.metric] > best:
                best = metrics[task.metric]
                save_atomic(model.state_dict(), out / "best_model.pt")
        if env.world > 1:
            dist.barrier()
        return metrics

    def log_entropy() -> None:
        if want_entropy:
            with preserved_rng():
                for row in entropy_rows(task, model, probe_batch, cfg, step):
                    entropy_log.write(row)
            entropy_log.sync()
            plot_entropy_curves(out / "entropy.csv", out / "entropy_curves.png")

    # ---- loop
    if env.main:
        log.info("%s | %d steps (%d per epoch) x %d process(es) | %s", cfg.task, total_steps, steps_per_epoch,
                 env.world, criterion.formula())
    if step == 0:
        log_entropy()
    bar = _progress(total_steps, step, env.main)
    model.train()
    t_last = time.perf_counter()
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        for batch in epoch_loader(task, train_set, cfg, env, epoch, offset):
            lr = get_lr(step, total_steps, cfg.optim.lr, cfg.schedule)
            batch = _to_device(batch, env.device)
            autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else nullcontext()
            with autocast:
                terms, task_terms = wrapped(batch, step)
            scale = eloss_scale(step, cfg.eloss)
            total, logged = criterion(terms, scales={"eloss_var": scale, "eloss_dir": scale})
            if not torch.isfinite(total):
                raise TrainError(f"step {step}: non-finite loss {logged}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            row = _mean_over_ranks({**logged, **{f"task/{k}": float(v) for k, v in task_terms.items()}}, env)
            if env.main:
                now = time.perf_counter()
                train_log.write({"step": step, "epoch": epoch, "lr": lr, **row, "step_s": now - t_last})
                t_last = now
                bar.update(1)
                if step % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{row['total']:.4g}", lr=f"{lr:.2e}")
            if cfg.eval_every and step % cfg.eval_every == 0 and step < total_steps:
                evaluate()
                if cfg.entropy_log.every == 0:
                    log_entropy()
            if cfg.entropy_log.every and step % cfg.entropy_log.every == 0:
                log_entropy()
            if step % cfg.ckpt_every == 0 or step == total_steps:
                if step == total_steps:
                    evaluate()
                    if cfg.entropy_log.every == 0 or step % cfg.entropy_log.every:
                        log_entropy()
                save()
            if step >= total_steps:
                break
    bar.close()
    metrics: dict[str, float] = {}
    if env.main:
        train_log.close()
        eval_log.close()
        entropy_log.close()
        save_atomic(model.state_dict(), out / "model.pt")
        rows = read_log(out / "eval.csv") if (out / "eval.csv").exists() else []
        metrics = {k: v for k, v in rows[-1].items() if k != "step"} if rows else {}
    result = {"steps": step, "metrics": metrics, "best_metric": best, "out_dir": str(out),
              "formula": criterion.formula()}
    if env.main and _entropy_available():
        result["fmcs"] = fmcs_report(out, block_steps=cfg.log_every)
        (out / "fmcs.json").write_text(json.dumps(result["fmcs"], indent=1))
    if env.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _entropy_available() -> bool:
    try:
        import glassbox.entropy  # noqa: F401
    except ImportError:
        log.warning("glassbox.entropy is not available: no entropy curves")
        return False
    return True


def _progress(total: int, start: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True, file=sys.stderr)


def _build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def _build_srm(task: Task, model: nn.Module, teacher: nn.Module, train_set, cfg: TrainConfig,
               env: DistEnv) -> SRMLoss:
    """SRM dictionaries sized from one batch, teacher dictionaries fitted (Step 1), identical on every rank."""
    d = cfg.distill
    single = DistEnv(0, 1, 0, env.device)                 # same data on every rank: identical dictionaries
    batches = iter(epoch_loader(task, train_set, cfg, single, epoch=1_000_000, skip_batches=0))
    batch = _to_device(next(batches), env.device)
    with torch.no_grad(), preserved_rng():
        _, _, s_out = task.loss(model, batch)
        _, _, t_out = task.loss(teacher, batch)
    srm = SRMLoss.from_features(s_out["features"], t_out["features"], d.srm_pairs or None, d.srm_mu,
                                d.srm_sparsity, seed=cfg.seed).to(env.device)
    opt = torch.optim.Adam(srm.teacher_dicts.parameters(), lr=d.srm_dictionary_lr)
    for i in range(d.srm_dictionary_steps):
        if i:
            try:
                batch = _to_device(next(batches), env.device)
            except StopIteration:
                batches = iter(epoch_loader(task, train_set, cfg, single, epoch=1_000_000 + i, skip_batches=0))
                batch = _to_device(next(batches), env.device)
            with torch.no_grad(), preserved_rng():
                _, _, t_out = task.loss(teacher, batch)
        loss = srm.dictionary_loss(t_out["features"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    srm.teacher_dicts.requires_grad_(False)
    if env.world > 1:
        for p in srm.parameters():
            dist.broadcast(p.data, 0)
    return srm


def command_line(program: str = "glassbox-train") -> str:
    """The command that started this process, quoted for a shell (for the model card)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    prefix = f"torchrun --nproc_per_node={world} -m glassbox_trainer.cli" if world > 1 else program
    return " ".join([prefix, *(shlex.quote(a) for a in sys.argv[1:])])
