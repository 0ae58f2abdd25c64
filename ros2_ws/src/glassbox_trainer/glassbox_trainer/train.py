"""The training engine: config -> build -> step loop -> evaluate -> atomic checkpoints, for every task.

``train(cfg, out_dir, resume=False)`` reads top to bottom: build the task, model, optional teacher and loss
terms (:func:`build_run`); start fresh or resume from ``last.pt`` (:func:`start`); then for every step take the
learning rate from the pure ``get_lr(step)``, compute the named loss terms, combine them with a
:class:`~glassbox_trainer.losses.WeightedSum`, step the optimiser and log every term to ``train_log.csv``
(:func:`train_step`); evaluate under ``torch.no_grad()`` every ``eval_every`` steps (``eval.csv``), log
per-layer entropy curves (``entropy.csv``, ``entropy_curves.png``) and save ``last.pt`` atomically every
``ckpt_every`` steps (:func:`after_step`); at the end write ``model.pt`` and ``fmcs.json`` (:func:`finish`).

Reproducibility (``checkpoint``, ``data``, ``logs``): the data order of step s depends only on (seed, epoch
of s); the checkpoint holds the model, optimiser, scheduler, AMP scaler, the RNG states of every rank, the step
and the config; evaluation and entropy logging save and restore the RNG states, so they never change the
training numbers; log rows after the checkpoint's step are dropped on resume. A run killed with SIGKILL at any
moment and resumed writes the same logs and weights as an uninterrupted run.

Multi-process (``distributed``): launched by ``torchrun``, every process trains on its shard of each global
batch (see ``step`` for which terms are exactly data-parallel). AMP (bfloat16 autocast, float16 with a
``GradScaler`` where bfloat16 is unsupported) is used on CUDA only.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from glassbox.config import to_dict
from glassbox_trainer.checkpoint import (CHECKPOINT, load_checkpoint, load_state_dict_file, preserved_rng,
                                         rng_state, save_atomic, seed_everything, set_rng_state)
from glassbox_trainer.config import TrainConfig
from glassbox_trainer.curves import entropy_rows, fmcs_report, plot_entropy_curves
from glassbox_trainer.data import epoch_loader, eval_loader, to_device
from glassbox_trainer.distributed import DistEnv, gather_objects, mean_over_ranks, setup_distributed, \
    teardown_distributed
from glassbox_trainer.errors import TrainError
from glassbox_trainer.logs import ENTROPY_LOG, EVAL_LOG, TRAIN_LOG, RunLogs, read_log
from glassbox_trainer.losses import WeightedSum
from glassbox_trainer.schedule import build_optimizer, build_scheduler, eloss_scale, get_lr
from glassbox_trainer.step import StepModule, build_srm, build_teacher, build_weights
from glassbox_trainer.task import Task, build_task

__all__ = ["CHECKPOINT", "Run", "StepModule", "TrainError", "build_weights", "command_line", "eval_loader", "get_lr",
           "load_state_dict_file", "read_log", "save_atomic", "train"]

log = logging.getLogger(__name__)

#: files of a run folder that a fresh (not resumed) run removes first
RUN_FILES = (CHECKPOINT, TRAIN_LOG, EVAL_LOG, ENTROPY_LOG, "fmcs.json", "best_model.pt")


@dataclass
class Run:
    """One training run: what :func:`build_run` made and where the loop stands (``step``, ``best``)."""

    cfg: TrainConfig
    env: DistEnv
    out: Path
    task: Task
    train_set: Dataset
    val_loader: DataLoader
    model: nn.Module
    step_module: StepModule
    wrapped: nn.Module                      # the step module, in DDP when there are several processes
    criterion: WeightedSum
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    steps_per_epoch: int
    total_steps: int
    logs: RunLogs
    step: int = 0
    best: float = -math.inf
    probe_batch: dict | None = None         # fixed validation batch of the entropy curves (main process)
    t_last: float = field(default_factory=time.perf_counter)
    t_start: float = field(default_factory=time.perf_counter)
    seconds_before: float = 0.0             # wall time of the processes this run resumed from

    @property
    def train_seconds(self) -> float:
        """Wall time of the whole run so far, over every process that resumed it."""
        return self.seconds_before + time.perf_counter() - self.t_start

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for p in self.step_module.parameters() if p.requires_grad]


# ------------------------------------------------------------------------------------------------- build
def build_run(cfg: TrainConfig, env: DistEnv, out: Path) -> Run:
    """Task, data, model, teacher, loss terms, optimiser, schedule and AMP of ``cfg`` (nothing trained yet)."""
    task = build_task(cfg.task, cfg.task_cfg)
    train_set, val_set = task.datasets()
    model = task.build_model(cfg.model_size).to(env.device)
    criterion = WeightedSum(build_weights(cfg))
    teacher = build_teacher(task, cfg, criterion.active, env.device)
    steps_per_epoch = len(train_set) // (cfg.batch_size * env.world)
    if steps_per_epoch < 1:
        raise TrainError(f"the training set ({len(train_set)} items) is smaller than one global batch "
                         f"({cfg.batch_size} x {env.world})")
    total_steps = cfg.steps or cfg.epochs * steps_per_epoch
    srm = None
    if "srm" in criterion.active:
        with preserved_rng():                       # dictionary fitting must not shift the training RNG streams
            srm = build_srm(task, model, teacher, train_set, cfg, env)
    step_module = StepModule(task, model, cfg, criterion.active, teacher, srm).to(env.device)
    optimizer = build_optimizer([p for p in step_module.parameters() if p.requires_grad], cfg)
    amp_dtype = None
    if cfg.amp and env.device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    wrapped: nn.Module = step_module
    if env.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=cfg.ddp_find_unused)
    return Run(cfg, env, out, task, train_set, eval_loader(task, val_set, cfg), model, step_module, wrapped,
               criterion, optimizer, build_scheduler(optimizer, total_steps, cfg.schedule),
               torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), amp_dtype, steps_per_epoch,
               total_steps, RunLogs(out))


def start(run: Run, resume: bool, command: str | None) -> None:
    """Resume from ``last.pt`` (weights, optimiser, RNG states, logs cut to its step) or clear the folder."""
    ckpt_path = run.out / CHECKPOINT
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, run.env.world)
        changed = sorted(k for k, v in to_dict(run.cfg).items() if ckpt["config"].get(k) != v)
        if changed:
            log.warning("resuming %s with a config that differs in: %s", ckpt_path, ", ".join(changed))
        run.step_module.load_state_dict(ckpt["step_module"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.scheduler.load_state_dict(ckpt["scheduler"])
        run.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"][run.env.rank])
        run.step, run.best = int(ckpt["step"]), float(ckpt["best_metric"])
        if run.env.main:
            run.logs.truncate(run.step)
        # checkpoints written before the run kept its wall time: the logged step times (evaluations not counted)
        run.seconds_before = float(ckpt["train_seconds"]) if "train_seconds" in ckpt else _logged_seconds(run)
        log.info("resumed from %s at step %d", ckpt_path, run.step)
    elif run.env.main:
        if resume:
            log.warning("--resume: no checkpoint in %s, starting from scratch", run.out)
        for name in RUN_FILES:
            (run.out / name).unlink(missing_ok=True)               # a fresh run never mixes with an old one
    run.env.barrier()
    if run.env.main:
        (run.out / "formula.txt").write_text(run.criterion.formula() + "\n")
        if command:
            (run.out / "command.txt").write_text(command + "\n")
    if run.env.main and run.cfg.entropy_log.enabled and _entropy_available():
        with preserved_rng():   # collate may draw random numbers: the same batch whether fresh or resumed
            seed_everything(run.cfg.seed)
            run.probe_batch = to_device(next(iter(run.val_loader)), run.env.device)


# --------------------------------------------------------------------------------- checkpoint, eval, curves
def save_checkpoint(run: Run) -> None:
    """Flush the logs and write ``last.pt`` atomically (with the RNG states of every rank)."""
    rngs = gather_objects(rng_state(), run.env)
    if run.env.main:
        run.logs.sync()
        save_atomic({"step": run.step, "best_metric": run.best, "world_size": run.env.world,
                     "train_seconds": run.train_seconds,
                     "config": to_dict(run.cfg), "model": run.model.state_dict(),
                     "step_module": run.step_module.state_dict(), "optimizer": run.optimizer.state_dict(),
                     "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "rng": rngs},
                    run.out / CHECKPOINT)


def evaluate(run: Run) -> dict[str, float]:
    """Validation metrics (main process, eval mode, no grad, RNG untouched) to ``eval.csv``; best model kept."""
    metrics: dict[str, float] = {}
    if run.env.main:
        with preserved_rng():
            run.model.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in run.task.evaluate(run.model, run.val_loader).items()}
            run.model.train()
        run.logs.eval.write({"step": run.step, **metrics})
        if run.task.metric in metrics and metrics[run.task.metric] > run.best:
            run.best = metrics[run.task.metric]
            save_atomic(run.model.state_dict(), run.out / "best_model.pt")
    run.env.barrier()
    return metrics


def log_entropy(run: Run) -> None:
    """Per-layer entropy of the fixed validation batch to ``entropy.csv`` and ``entropy_curves.png``."""
    if run.probe_batch is None:
        return
    with preserved_rng():
        for row in entropy_rows(run.task, run.model, run.probe_batch, run.cfg, run.step):
            run.logs.entropy.write(row)
    run.logs.entropy.sync()
    plot_entropy_curves(run.out / ENTROPY_LOG, run.out / "entropy_curves.png")


# ------------------------------------------------------------------------------------------------- loop
def train_step(run: Run, batch: Any, epoch: int) -> dict[str, float]:
    """One optimiser step on ``batch``; returns the logged row (averaged over processes)."""
    cfg = run.cfg
    lr = get_lr(run.step, run.total_steps, cfg.optim.lr, cfg.schedule)
    batch = to_device(batch, run.env.device)
    autocast = torch.autocast("cuda", dtype=run.amp_dtype) if run.amp_dtype else nullcontext()
    with autocast:
        terms, task_terms = run.wrapped(batch, run.step)
    scale = eloss_scale(run.step, cfg.eloss)
    total, logged = run.criterion(terms, scales={"eloss_var": scale, "eloss_dir": scale})
    if not torch.isfinite(total):
        raise TrainError(f"step {run.step}: non-finite loss {logged}")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    if cfg.optim.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.params, cfg.optim.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.step += 1
    row = mean_over_ranks({**logged, **{f"task/{k}": float(v) for k, v in task_terms.items()}}, run.env)
    if run.env.main:
        now = time.perf_counter()
        run.logs.train.write({"step": run.step, "epoch": epoch, "lr": lr, **row, "step_s": now - run.t_last})
        run.t_last = now
    return {"lr": lr, **row}


def after_step(run: Run) -> None:
    """What falls due after a step: evaluation, entropy curves, checkpoint (the last step does all three)."""
    cfg, step, last = run.cfg, run.step, run.step == run.total_steps
    every = cfg.entropy_log.every
    if cfg.eval_every and step % cfg.eval_every == 0 and not last:
        evaluate(run)
        if every == 0:
            log_entropy(run)
    if every and step % every == 0:
        log_entropy(run)
    if step % cfg.ckpt_every == 0 or last:
        if last:
            evaluate(run)
            if every == 0 or step % every:
                log_entropy(run)
        save_checkpoint(run)


def run_loop(run: Run) -> None:
    """Steps from ``run.step`` to ``run.total_steps``, epoch by epoch in the resumable data order."""
    if run.step == 0:
        log_entropy(run)
    bar = _progress(run.total_steps, run.step, run.env.main)
    run.model.train()
    run.t_last = time.perf_counter()
    while run.step < run.total_steps:
        epoch, offset = divmod(run.step, run.steps_per_epoch)
        for batch in epoch_loader(run.task, run.train_set, run.cfg, run.env, epoch, offset):
            row = train_step(run, batch, epoch)
            bar.update(1)
            if run.step % run.cfg.log_every == 0:
                bar.set_postfix(loss=f"{row['total']:.4g}", lr=f"{row['lr']:.2e}")
            after_step(run)
            if run.step >= run.total_steps:
                break
    bar.close()


def finish(run: Run, train_seconds: float) -> dict[str, Any]:
    """Close the logs, write ``model.pt`` and ``fmcs.json``; the run's result (final metrics and facts)."""
    metrics: dict[str, float] = {}
    result: dict[str, Any] = {"steps": run.step, "metrics": metrics, "best_metric": run.best,
                              "out_dir": str(run.out), "formula": run.criterion.formula(),
                              "train_seconds": train_seconds}
    if run.env.main:
        run.logs.close()
        save_atomic(run.model.state_dict(), run.out / "model.pt")
        rows = read_log(run.out / EVAL_LOG) if (run.out / EVAL_LOG).exists() else []
        metrics.update({k: v for k, v in rows[-1].items() if k != "step"} if rows else {})
        if _entropy_available():
            result["fmcs"] = fmcs_report(run.out, block_steps=run.cfg.log_every)
            (run.out / "fmcs.json").write_text(json.dumps(result["fmcs"], indent=1))
    return result


# ------------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, command: str | None = None) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the final validation metrics and run facts
    (``train_seconds``: the wall time of the whole run, resumed parts included)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    env = setup_distributed(cfg.device)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    env.barrier()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed + env.rank)
    run = build_run(cfg, env, out)
    run.t_start = t0
    start(run, resume, command)
    if env.main:
        log.info("%s | %d steps (%d per epoch) x %d process(es) | %s", cfg.task, run.total_steps,
                 run.steps_per_epoch, env.world, run.criterion.formula())
    run_loop(run)
    result = finish(run, run.train_seconds)
    teardown_distributed(env)
    return result


def _logged_seconds(run: Run) -> float:
    """Sum of the step times in the training log (0 when it has none)."""
    path = run.out / TRAIN_LOG
    rows = read_log(path) if path.exists() else []
    return float(sum(float(r.get("step_s", 0.0)) for r in rows))


def _entropy_available() -> bool:
    try:
        import glassbox.entropy  # noqa: F401
    except ImportError:
        log.warning("glassbox.entropy is not available: no entropy curves")
        return False
    return True


def _progress(total: int, start_step: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=start_step, disable=not enabled, unit="step", dynamic_ncols=True,
                file=sys.stderr)


def command_line(program: str = "glassbox-train") -> str:
    """The command that started this process, quoted for a shell (for the model card)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    prefix = f"torchrun --nproc_per_node={world} -m glassbox_trainer.cli" if world > 1 else program
    return " ".join([prefix, *(shlex.quote(a) for a in sys.argv[1:])])
