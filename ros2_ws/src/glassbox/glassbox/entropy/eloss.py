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

``eloss_terms`` sums them over one or more layer groups (the variances and direction terms of the groups are
summed, as the released code sums its two SECOND blocks), optionally on entropies per dimension (H / d), which
puts layers of different size on one scale; the trainer weights the two sums (``eloss_var``, ``eloss_dir``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

DIRECTION_MODES = ("bounded", "printed")


class ElossError(ValueError):
    """Eloss configuration or inputs that do not fit together."""


def _as_tensor(values: Tensor | np.ndarray | Sequence[float]) -> Tensor:
    t = values if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float64))
    if t.dim() != 1:
        raise ElossError(f"expected a 1-D sequence of values, got shape {tuple(t.shape)}")
    return t


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


def eloss_terms(entropies: Mapping[str, Tensor], groups: Sequence[Sequence[str]], direction: str = "bounded",
                tau: float = 1.0, unbiased: bool = False,
                dims: Mapping[str, int] | None = None) -> dict[str, Tensor]:
    """Eloss over layer groups: ``{"eloss_var": sum_g L1_g, "eloss_dir": sum_g L2_g}`` as tensors.

    ``entropies`` maps layer names to (differentiable) entropies; ``groups`` are lists of layer names, each in
    forward order with at least two layers. The terms of the groups are summed, as the released code sums its
    two SECOND blocks. ``direction``: "bounded" (:func:`eloss_direction_bounded` with ``tau``) or "printed"
    (the paper's L2). ``dims``: when given, each entropy is divided by its layer's sample dimension d first
    (entropy per dimension, which puts layers of different size on one scale). The caller weights the terms.
    """
    if not groups:
        raise ElossError("Eloss: no layer groups")
    if direction not in DIRECTION_MODES:
        raise ElossError(f"Eloss: direction must be one of {DIRECTION_MODES}, got {direction!r}")
    var_total: Tensor | None = None
    dir_total: Tensor | None = None
    for group in groups:
        if len(group) < 2:
            raise ElossError(f"Eloss: a group needs at least two layers, got {list(group)}")
        missing = [n for n in group if n not in entropies or (dims is not None and n not in dims)]
        if missing:
            raise ElossError(f"Eloss: no entropy for layer '{missing[0]}' (have: {', '.join(entropies)})")
        deltas = entropy_deltas(torch.stack([entropies[n] / (dims[n] if dims is not None else 1) for n in group]))
        var = eloss_variance(deltas, unbiased=unbiased)
        dr = eloss_direction(deltas) if direction == "printed" else eloss_direction_bounded(deltas, tau)
        var_total = var if var_total is None else var_total + var
        dir_total = dr if dir_total is None else dir_total + dr
    return {"eloss_var": var_total, "eloss_dir": dir_total}
