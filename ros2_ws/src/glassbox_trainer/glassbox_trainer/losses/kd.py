"""Logit knowledge distillation (Hinton et al.), with per-pixel averaging for dense outputs.

``L = T^2 * KL(p_teacher^T || p_student^T)`` where ``p^T`` are the outputs softened by the temperature ``T``.
Reductions: for class logits ``(B, C)`` the KL is summed over classes and averaged over the batch; for dense
logits ``(B, C, H, W)`` it is summed over classes and averaged over *valid pixels*, so the value does not
change with resolution (the per-batch reduction of common KD code grows with H*W). ``mode="sigmoid"`` treats
every channel as an independent Bernoulli (heatmap heads): the binary KL is summed over channels and averaged
the same way. The teacher is detached: gradients reach the student only. The seeds' SRM pipeline ends with
this loss but never writes it; the form is the standard one.
"""
from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn


class KDError(ValueError):
    """Student and teacher outputs (or the valid mask) do not fit together."""


def _reduce(per_pixel: Tensor, valid: Tensor | None) -> Tensor:
    """Average a (B,) or (B, H, W) map over its valid entries."""
    if valid is None:
        return per_pixel.mean()
    if valid.shape != per_pixel.shape:
        raise KDError(f"valid mask shape {tuple(valid.shape)} does not match {tuple(per_pixel.shape)}")
    valid = valid.to(per_pixel.dtype)
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)


def kd_loss(student: Tensor, teacher: Tensor, temperature: float = 4.0, valid: Tensor | None = None,
            mode: Literal["softmax", "sigmoid"] = "softmax") -> Tensor:
    """KD loss between student and teacher logits, ``(B, C)`` or ``(B, C, H, W)``; scalar, times ``T^2``."""
    if student.shape != teacher.shape:
        raise KDError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ")
    if student.dim() not in (2, 4):
        raise KDError(f"logits must be (B, C) or (B, C, H, W), got {tuple(student.shape)}")
    if temperature <= 0:
        raise KDError(f"temperature must be > 0, got {temperature}")
    s = student.float() / temperature
    t = teacher.detach().float() / temperature
    if mode == "softmax":
        log_ps = F.log_softmax(s, dim=1)
        log_pt = F.log_softmax(t, dim=1)
        per = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)                      # (B,) or (B, H, W)
    elif mode == "sigmoid":
        log_ps, log_qs = F.logsigmoid(s), F.logsigmoid(-s)
        log_pt, log_qt = F.logsigmoid(t), F.logsigmoid(-t)
        per = (log_pt.exp() * (log_pt - log_ps) + log_qt.exp() * (log_qt - log_qs)).sum(dim=1)
    else:
        raise KDError(f"mode must be 'softmax' or 'sigmoid', got {mode!r}")
    return _reduce(per, valid) * temperature ** 2


class KDLoss(nn.Module):
    """:func:`kd_loss` with its temperature and mode fixed; ``forward(student, teacher, valid=None)``."""

    def __init__(self, temperature: float = 4.0, mode: Literal["softmax", "sigmoid"] = "softmax"):
        super().__init__()
        self.temperature = float(temperature)
        self.mode = mode

    def forward(self, student: Tensor, teacher: Tensor, valid: Tensor | None = None) -> Tensor:
        return kd_loss(student, teacher, self.temperature, valid, self.mode)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, mode={self.mode}"


__all__ = ["KDError", "KDLoss", "kd_loss"]
