"""One training step's loss terms: the task loss plus every configured extra term, in one module.

``StepModule.forward(batch, step)`` returns ``(terms, task_terms)``: named loss tensors for the
:class:`~glassbox_trainer.losses.WeightedSum` and the task's own float terms. The loop wraps this module (not
the bare model) in ``DistributedDataParallel``, so a task may call any model method (``forward_features``,
``forward_head``). Terms that are linear in the batch (task losses, KD, SRM) give the same gradient as one
process with the whole batch; Eloss, a non-linear function of batch-mean entropies, is computed per process
shard (like BatchNorm statistics), and MOSAKD's neighbours are searched within each shard.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from glassbox_trainer.checkpoint import load_state_dict_file, preserved_rng
from glassbox_trainer.config import ElossConfig, TrainConfig
from glassbox_trainer.data import epoch_loader, to_device
from glassbox_trainer.distributed import DistEnv, broadcast_parameters
from glassbox_trainer.errors import TrainError, need_output
from glassbox_trainer.losses import KDLoss, MOSAKDLoss, SRMLoss
from glassbox_trainer.task import Task


def build_weights(cfg: TrainConfig) -> dict[str, float]:
    """The WeightedSum weights of a config: the task loss and every configured extra term."""
    d = cfg.distill
    return {"task": 1.0, "eloss_var": cfg.eloss.weight, "eloss_dir": cfg.eloss.direction_weight,
            "kd": d.kd_weight, "srm": d.srm_weight, "mosakd": d.mosakd_weight}


def eloss_terms(features: Mapping[str, Tensor], groups: list[list[str]], cfg: ElossConfig) -> dict[str, Tensor]:
    """``eloss_var`` and ``eloss_dir`` (``glassbox.entropy.eloss_terms``) of the feature maps of ``groups``,
    with the entropy estimator of ``cfg`` (per dimension when ``cfg.per_dim``)."""
    from glassbox.entropy import ProbeConfig, eloss_terms as group_terms
    from glassbox.entropy.probe import layer_entropy

    probe = ProbeConfig(estimator=cfg.estimator, k=cfg.k, sample_mode=cfg.sample_mode,
                        max_samples=cfg.max_samples, max_dim=cfg.max_dim)
    entropies: dict[str, Tensor] = {}
    dims: dict[str, int] = {}
    for name in dict.fromkeys(n for g in groups for n in g):
        if name not in features:
            raise TrainError(f"Eloss layer '{name}' is not among the features ({', '.join(features)})")
        entropies[name], _, dims[name] = layer_entropy(features[name].float(), probe)
    return group_terms(entropies, groups, direction=cfg.variant, tau=cfg.tau, unbiased=cfg.unbiased,
                       dims=dims if cfg.per_dim else None)


class StepModule(nn.Module):
    """Everything with trainable parameters in one forward: the task loss and every active extra term."""

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
            e = eloss_terms(need_output(out, "features", "Eloss"), self.groups, self.cfg.eloss)
            terms.update({k: v for k, v in e.items() if k in self.active})
        if self.teacher is not None:
            with torch.no_grad():
                _, _, t_out = self.task.loss(self.teacher, batch)
            if self.kd is not None:
                terms["kd"] = self.kd(need_output(out, "logits", "KD"), need_output(t_out, "logits", "KD"),
                                      out.get("valid"))
            if self.srm is not None:
                terms["srm"] = self.srm(need_output(out, "features", "SRM"), need_output(t_out, "features", "SRM"))
        if self.mosakd is not None:
            gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
            terms["mosakd"] = self.mosakd(need_output(out, "features", "MOSAKD"),
                                          need_output(out, "logits", "MOSAKD"), need_output(out, "labels", "MOSAKD"),
                                          gen)
        return terms, task_terms


def build_teacher(task: Task, cfg: TrainConfig, active: list[str], device: torch.device) -> nn.Module | None:
    """The frozen teacher of the KD / SRM terms (``None`` when neither is active)."""
    if not {"kd", "srm"} & set(active):
        return None
    if not cfg.distill.teacher:
        raise TrainError("kd_weight / srm_weight need distill.teacher (a teacher checkpoint)")
    teacher = task.build_model(cfg.distill.teacher_size)
    teacher.load_state_dict(load_state_dict_file(cfg.distill.teacher))
    return teacher.to(device).eval().requires_grad_(False)


def build_srm(task: Task, model: nn.Module, teacher: nn.Module, train_set: Dataset, cfg: TrainConfig,
              env: DistEnv) -> SRMLoss:
    """SRM dictionaries sized from one batch, teacher dictionaries fitted (Step 1), identical on every rank."""
    d = cfg.distill
    single = DistEnv(0, 1, 0, env.device)                 # same data on every rank: identical dictionaries

    def batches(epoch: int):
        for batch in epoch_loader(task, train_set, cfg, single, epoch=epoch, skip_batches=0):
            yield to_device(batch, env.device)

    def teacher_features(batch: dict) -> dict[str, Tensor]:
        with torch.no_grad(), preserved_rng():
            return task.loss(teacher, batch)[2]["features"]

    stream = batches(1_000_000)
    batch = next(stream)
    with torch.no_grad(), preserved_rng():
        s_feats = task.loss(model, batch)[2]["features"]
    t_feats = teacher_features(batch)
    srm = SRMLoss.from_features(s_feats, t_feats, d.srm_pairs or None, d.srm_mu, d.srm_sparsity,
                                seed=cfg.seed).to(env.device)
    opt = torch.optim.Adam(srm.teacher_dicts.parameters(), lr=d.srm_dictionary_lr)
    for i in range(d.srm_dictionary_steps):
        if i:
            batch = next(stream, None)
            if batch is None:
                stream = batches(1_000_000 + i)
                batch = next(stream)
            t_feats = teacher_features(batch)
        loss = srm.dictionary_loss(t_feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    srm.teacher_dicts.requires_grad_(False)
    broadcast_parameters(srm, env)
    return srm
