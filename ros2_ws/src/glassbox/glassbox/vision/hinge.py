"""Per-pixel multi-class hinge loss (Tzelepi et al., D4.2 §2.4, Eq. 35) and the pixel cross-entropy it replaces.

``"ohem"`` is the cross-entropy of BiSeNet's own training recipe with online hard example mining: only pixels
whose loss exceeds ``-log(0.7)`` count, and at least the hardest 1/16 of the valid pixels, so that the few
pixels of poles, pedestrians and cyclists are not outvoted by the road and the sky.

For a pixel with correct class c and raw scores y (no softmax), the hinge loss is
``sum_j max(0, 1 - z_j * y_j)`` with ``z_j = +1`` for j = c and ``-1`` otherwise: a one-vs-all margin on every
class score. Both losses average over the valid pixels (those whose label is not ``ignore_index``), so the value
does not change with resolution; an input with no valid pixel gives 0 (with a gradient of zeros).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def pixel_hinge_loss(logits: Tensor, target: Tensor, ignore_index: int = 255, margin: float = 1.0) -> Tensor:
    """logits (B, K, H, W) raw scores, target (B, H, W) int64 -> scalar mean over valid pixels."""
    valid = target != ignore_index                                              # (B, H, W)
    safe = torch.where(valid, target, torch.zeros_like(target))
    sign = 2.0 * F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype) - 1.0  # (B, K, H, W)
    per_pixel = torch.clamp(margin - sign * logits, min=0.0).sum(dim=1)       # (B, H, W)
    count = valid.sum()
    return (per_pixel * valid).sum() / count.clamp(min=1)


def pixel_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Softmax cross-entropy averaged over valid pixels (0 when there is none)."""
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def pixel_ohem_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = 255, threshold: float = 0.7,
                             min_fraction: float = 1.0 / 16.0) -> Tensor:
    """Mean cross-entropy of the hard valid pixels: those with p(correct) < ``threshold``, and at least the
    ``min_fraction`` hardest ones (0 when no pixel is valid)."""
    per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    valid = (target != ignore_index).flatten()
    losses = per_pixel[valid]
    if losses.numel() == 0:
        return logits.sum() * 0.0
    n_min = max(1, int(min_fraction * losses.numel()))
    hard = losses[losses > -torch.log(torch.tensor(threshold, dtype=losses.dtype))]
    if hard.numel() < n_min:
        hard = torch.topk(losses, n_min).values
    return hard.mean()


class SegmentationLoss(nn.Module):
    """Principal loss (``"hinge"``, ``"ce"`` or ``"ohem"``) on the main output plus ``aux_weight`` x CE on each auxiliary head.

    The auxiliary heads keep cross-entropy in both modes (the paper does not say; CE keeps them a plain deep
    supervision signal).
    """

    def __init__(self, principal: str = "hinge", aux_weight: float = 1.0, ignore_index: int = 255) -> None:
        super().__init__()
        if principal not in ("hinge", "ce", "ohem"):
            raise ValueError(f"principal loss must be 'hinge', 'ce' or 'ohem', got {principal!r}")
        self.principal, self.aux_weight, self.ignore_index = principal, aux_weight, ignore_index

    def forward(self, logits: Tensor, aux: list[Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        fn = {"hinge": pixel_hinge_loss, "ce": pixel_cross_entropy, "ohem": pixel_ohem_cross_entropy}[self.principal]
        main = fn(logits, target, ignore_index=self.ignore_index)
        terms = {self.principal: float(main.detach())}
        total = main
        for i, a in enumerate(aux):
            term = pixel_cross_entropy(a, target, ignore_index=self.ignore_index)
            terms[f"aux{i + 1}_ce"] = float(term.detach())
            total = total + self.aux_weight * term
        return total, terms


def pixel_entropy(logits: Tensor) -> Tensor:
    """Predictive entropy (nats) of the per-pixel softmax, (B, K, H, W) -> (B, H, W)."""
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)
