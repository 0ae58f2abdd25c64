"""Eloss: training terms on the entropy changes between consecutive probed layers (Eloss paper, Eq. 5-6).

For the per-layer entropies H[0..L-1] of one group of repeated layers, the changes are
``delta[l] = H[l+1] - H[l]`` (L - 1 of them), and

- ``eloss_variance``  L1 = (1/N) sum (delta - mean(delta))^2, the population variance (N = number of
  deltas, which is what the paper's "number of layers" has to mean for the formula to be defined);
  ``unbiased=True`` divides by N - 1 like the authors' released code. L1 = 0 when every layer changes the
  entropy by the same amount; it ignores constant offsets of H and of delta.
- ``eloss_direction``  L2 = -sum delta^2, exactly as printed. The text says it promotes a *decrease* in
  entropy, but the formula is symmetric in the sign of delta and unbounded below: minimising it rewards
  growing |delta| in either direction, which a network can achieve by inflating or collapsing its activation
  scale (H(aX) = H(X) + d log|a|). Kept for fidelity; not recommended as a training term.
- ``eloss_direction_bounded``  mean(tanh(delta / tau)), not in the paper. It is monotone in every delta (each
  decrease lowers it, each increase raises it), so it rewards decrease and only decrease; it is bounded in
  (-1, 1), so a run cannot win by driving entropies to -inf, and its gradient fades once a change is a few
  ``tau`` below zero, which leaves the steadiness to L1. ``tau`` (nats) sets the scale of a meaningful change.

``ElossLoss`` combines them with weights over one or more layer groups (the variances and direction terms of
the groups are summed, as the released code sums its two SECOND blocks), optionally on entropies per
dimension (H / d), which puts layers of different size on one scale.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

DIRECTION_MODES = ("bounded", "printed")


class ElossError(ValueError):
    """Eloss configuration or inputs that do not fit together."""


def _as_tensor(values: Tensor | np.ndarray | Sequence[float]) -> Tensor:
    t = values if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float64))
    if t.dim() != 1:
        raise ElossError(f"expected a 1-D sequence of values, got shape {tuple(t.shape)}")
    return t


def _item(value: Tensor | float) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


def entropy_deltas(entropies: Tensor | np.ndarray | Sequence[float]) -> Tensor:
    """Changes between consecutive layers: (L,) -> (L - 1,), ``delta[l] = H[l+1] - H[l]``."""
    h = _as_tensor(entropies)
    return h[1:] - h[:-1]


def eloss_variance(deltas: Tensor | np.ndarray | Sequence[float], unbiased: bool = False) -> Tensor:
    """L1: variance of the entropy changes (population by default); 0 for fewer than two changes."""
    d = _as_tensor(deltas)
    n = d.shape[0]
    if n < 2:
        return d.sum() * 0.0 + 0.0
    centred = d - d.mean()
    return (centred * centred).sum() / (n - 1 if unbiased else n)


def eloss_direction(deltas: Tensor | np.ndarray | Sequence[float]) -> Tensor:
    """L2 as printed: ``-sum(delta^2)`` (sign-symmetric, unbounded below; see the module notes)."""
    d = _as_tensor(deltas)
    return -(d * d).sum()


def eloss_direction_bounded(deltas: Tensor | np.ndarray | Sequence[float], tau: float = 1.0) -> Tensor:
    """Bounded direction term ``mean(tanh(delta / tau))`` in (-1, 1): lower when entropy decreases."""
    if tau <= 0.0:
        raise ElossError(f"tau must be > 0, got {tau}")
    d = _as_tensor(deltas)
    if d.shape[0] == 0:
        return d.sum() * 0.0 + 0.0
    return torch.tanh(d / tau).mean()


class ElossLoss(nn.Module):
    """Weighted Eloss over layer groups: ``variance_weight * sum_g L1_g + direction_weight * sum_g L2_g``.

    ``groups``: lists of layer names (each group in forward order, at least two layers). ``direction``:
    "bounded" (default, :func:`eloss_direction_bounded` with ``tau``) or "printed" (the paper's L2).
    ``per_dim``: divide each entropy by its sample dimension d first (then ``dims`` must be passed to forward).
    ``forward(entropies, dims=None)`` returns ``(total, terms)`` where ``terms`` holds detached floats: the raw
    ``eloss_variance`` and ``eloss_direction`` sums and the weighted ``eloss``.
    """

    def __init__(self, groups: Sequence[Sequence[str]], variance_weight: float = 1.0,
                 direction_weight: float = 0.0, direction: str = "bounded", tau: float = 1.0,
                 unbiased: bool = False, per_dim: bool = False) -> None:
        super().__init__()
        self.groups = [list(g) for g in groups]
        if not self.groups:
            raise ElossError("ElossLoss: no layer groups")
        for g in self.groups:
            if len(g) < 2:
                raise ElossError(f"ElossLoss: a group needs at least two layers, got {g}")
        if direction not in DIRECTION_MODES:
            raise ElossError(f"ElossLoss: direction must be one of {DIRECTION_MODES}, got {direction!r}")
        if tau <= 0.0:
            raise ElossError(f"ElossLoss: tau must be > 0, got {tau}")
        self.variance_weight = float(variance_weight)
        self.direction_weight = float(direction_weight)
        self.direction = direction
        self.tau = float(tau)
        self.unbiased = unbiased
        self.per_dim = per_dim

    @property
    def layers(self) -> list[str]:
        """Every layer named by some group, in first-seen order (what a probe must hook)."""
        return list(dict.fromkeys(name for g in self.groups for name in g))

    def forward(self, entropies: Mapping[str, Tensor],
                dims: Mapping[str, int] | None = None) -> tuple[Tensor, dict[str, float]]:
        missing = [n for n in self.layers if n not in entropies]
        if missing:
            raise ElossError(f"ElossLoss: no entropy for layer '{missing[0]}' (have: {', '.join(entropies)})")
        if self.per_dim and dims is None:
            raise ElossError("ElossLoss: per_dim=True needs the sample dimension of every layer (dims=...)")
        var_total: Tensor | float = 0.0
        dir_total: Tensor | float = 0.0
        for g in self.groups:
            h = torch.stack([entropies[n] / (dims[n] if self.per_dim else 1) for n in g])
            deltas = h[1:] - h[:-1]
            var_total = var_total + eloss_variance(deltas, unbiased=self.unbiased)
            if self.direction == "printed":
                dir_total = dir_total + eloss_direction(deltas)
            else:
                dir_total = dir_total + eloss_direction_bounded(deltas, self.tau)
        total = self.variance_weight * var_total + self.direction_weight * dir_total
        terms = {"eloss_variance": _item(var_total), "eloss_direction": _item(dir_total),
                 "eloss": _item(total)}
        return total, terms

    def extra_repr(self) -> str:
        direction = "-sum(dH^2)" if self.direction == "printed" else f"mean(tanh(dH/{self.tau:g}))"
        return (f"eloss = {self.variance_weight:g} * var(dH) + {self.direction_weight:g} * {direction} "
                f"over {len(self.groups)} group(s){' per dimension' if self.per_dim else ''}")
