"""Per-pixel multi-class hinge loss (Tzelepi et al., D4.2 §2.4, Eq. 35) and the pixel cross-entropy it replaces.

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


class SegmentationLoss(nn.Module):
    """Principal loss (``"hinge"`` or ``"ce"``) on the main output plus ``aux_weight`` x CE on each auxiliary head.

    The auxiliary heads keep cross-entropy in both modes (the paper does not say; CE keeps them a plain deep
    supervision signal).
    """

    def __init__(self, principal: str = "hinge", aux_weight: float = 1.0, ignore_index: int = 255) -> None:
        super().__init__()
        if principal not in ("hinge", "ce"):
            raise ValueError(f"principal loss must be 'hinge' or 'ce', got {principal!r}")
        self.principal, self.aux_weight, self.ignore_index = principal, aux_weight, ignore_index

    def forward(self, logits: Tensor, aux: list[Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        fn = pixel_hinge_loss if self.principal == "hinge" else pixel_cross_entropy
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
