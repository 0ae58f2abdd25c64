"""Feature-map convergence score (FMCS) markers from a training-loss curve (Zhang et al., FMCS / FMCE-Net).

From the per-epoch training losses L_1..L_M:

1. smoothing: exponential moving average ``S_m = alpha S_(m-1) + (1 - alpha) L_m`` with S_1 = L_1 (default), or
   the formula as printed in the paper, ``S_m = alpha L_(m-1) + (1 - alpha) L_m``, which blends the *raw*
   previous loss and barely smooths; the paper's smoothed curves look like an EMA, hence the default.
2. convergence quantification indicator: ``CQI_m = mean(|S_j - S_(j-1)|)`` over the last min(B, m - 1) epochs
   j <= m (the first epoch has no difference; CQI_1 is +inf so it never counts as converged).
3. E_K: the first epoch with CQI <= mu (the paper: mu = 1e-4 for 10-class, 1e-3 for 100-class tasks).
4. E_0 = argmax L (earliest on ties); G = |log S(E_K) - log S(E_0)|; the phase markers E_k, k < K, are the first
   epochs after E_0 whose log-drop reaches k G / K ("first_crossing", default) or the epochs nearest to it
   ("nearest"); E_K closes the list. Epochs are 1-based, as in the paper. Markers are non-decreasing and may
   repeat when the loss drops faster than one phase per epoch.

Feature maps produced by the weights saved at epoch E_k carry the label k (1..K). :func:`stratified_split`
gives the paper's 3:1 train/test split with equal label counts, and :class:`FmceNet` is the small convolutional
classifier that predicts the label from a feature map.

Window B is not given in the paper; 5 is the default here. If CQI never reaches mu the run has not converged:
``on_no_convergence="raise"`` raises :class:`FmcsError`, ``"argmin"`` takes E_K = argmin S and marks the result
``converged=False``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import lfilter
from torch import Tensor, nn


class FmcsError(ValueError):
    """A loss curve or FMCS parameters from which no phase markers can be derived."""


@dataclass
class FmcsResult:
    """Phase markers (1-based epochs E_1..E_K) of one training run and the curves they came from."""

    markers: np.ndarray        # (K,) int64, non-decreasing, markers[-1] = E_K
    start_epoch: int           # E_0 (1-based)
    smoothed: np.ndarray       # (M,) float64
    cqi: np.ndarray            # (M,) float64, cqi[0] = inf
    converged: bool


def smooth_losses(losses: np.ndarray, alpha: float = 0.85, mode: str = "ema") -> np.ndarray:
    """Smoothed loss curve, (M,) -> (M,) float64; ``mode`` "ema" or "as_printed" (see the module notes)."""
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise FmcsError(f"losses must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise FmcsError("losses contain non-finite values")
    if not 0.0 < alpha <= 1.0:
        raise FmcsError(f"alpha must be in (0, 1], got {alpha}")
    if mode == "ema":
        y, _ = lfilter([1.0 - alpha], [1.0, -alpha], x, zi=[alpha * x[0]])
        return y
    if mode == "as_printed":
        y = x.copy()
        y[1:] = alpha * x[:-1] + (1.0 - alpha) * x[1:]
        return y
    raise FmcsError(f"smoothing mode must be 'ema' or 'as_printed', got {mode!r}")


def cqi(smoothed: np.ndarray, window: int = 5) -> np.ndarray:
    """Convergence quantification indicator per epoch, (M,) -> (M,); ``cqi[0] = inf``."""
    s = np.asarray(smoothed, dtype=np.float64)
    if window < 1:
        raise FmcsError(f"window must be >= 1, got {window}")
    absdiff = np.abs(np.diff(s))                                            # (M-1,) |S_m - S_(m-1)|, m = 2..M
    csum = np.concatenate([[0.0], np.cumsum(absdiff)])
    m = np.arange(1, s.size)                                                # number of differences available
    count = np.minimum(m, window)
    out = np.full(s.size, np.inf)
    out[1:] = (csum[m] - csum[m - count]) / count
    return out


def fmcs(losses: np.ndarray, num_phases: int = 10, alpha: float = 0.85, window: int = 5, mu: float = 1e-4,
         smoothing: str = "ema", marker_rule: str = "first_crossing",
         on_no_convergence: str = "raise") -> FmcsResult:
    """Phase markers E_1..E_K of a training run from its per-epoch training losses (see the module notes)."""
    if num_phases < 1:
        raise FmcsError(f"num_phases must be >= 1, got {num_phases}")
    if marker_rule not in ("first_crossing", "nearest"):
        raise FmcsError(f"marker_rule must be 'first_crossing' or 'nearest', got {marker_rule!r}")
    if on_no_convergence not in ("raise", "argmin"):
        raise FmcsError(f"on_no_convergence must be 'raise' or 'argmin', got {on_no_convergence!r}")
    raw = np.asarray(losses, dtype=np.float64)
    s = smooth_losses(raw, alpha, smoothing)
    if np.any(s <= 0.0):
        raise FmcsError("smoothed losses must be positive (the markers use their logarithm)")
    c = cqi(s, window)
    e0 = int(np.argmax(raw))
    below = np.flatnonzero((c <= mu) & (np.arange(s.size) > e0))
    converged = below.size > 0
    if converged:
        ek = int(below[0])
    elif on_no_convergence == "argmin":
        ek = e0 + int(np.argmin(s[e0:]))
    else:
        raise FmcsError(f"CQI never reaches mu={mu:g} after epoch {e0 + 1} (min CQI {np.min(c):.3g}); "
                        "train longer, raise mu, or use on_no_convergence='argmin'")
    logs = np.log(s)
    drop = np.abs(logs - logs[e0])                                          # (M,)
    gap = abs(logs[ek] - logs[e0]) / num_phases
    targets = gap * np.arange(1, num_phases)                                # (K-1,)
    span = drop[e0 + 1:ek + 1]                                              # epochs E_0+1 .. E_K
    if marker_rule == "first_crossing":
        reached = span[None, :] >= targets[:, None]                         # (K-1, span)
        first = np.where(reached.any(1), reached.argmax(1), span.size - 1)
    else:
        first = np.abs(span[None, :] - targets[:, None]).argmin(1)
    markers = np.concatenate([e0 + 1 + first, [ek]]).astype(np.int64)
    markers = np.maximum.accumulate(markers) + 1                            # 1-based
    return FmcsResult(markers=markers, start_epoch=e0 + 1, smoothed=s, cqi=c, converged=converged)


def stratified_split(labels: np.ndarray, train_fraction: float = 0.75,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with the same count of every label in each split (the paper's 3:1 split).

    Every label keeps ``floor(m * train_fraction)`` items for training, where m is the smallest label count;
    labels with more items are trimmed to m so the splits stay balanced.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise FmcsError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if not 0.0 < train_fraction < 1.0:
        raise FmcsError(f"train_fraction must be in (0, 1), got {train_fraction}")
    classes, counts = np.unique(y, return_counts=True)
    per_class = int(counts.min())
    n_train = int(per_class * train_fraction)
    if n_train == 0 or n_train == per_class:
        raise FmcsError(f"too few items per label ({per_class}) for a {train_fraction:g} split")
    rng = np.random.default_rng(seed)
    order = rng.permutation(y.size)
    ys = y[order]
    sort = np.argsort(ys, kind="stable")                                    # grouped by label, shuffled inside
    ranked = order[sort]
    starts = np.searchsorted(ys[sort], classes)
    offsets = np.arange(per_class)
    take = ranked[starts[:, None] + offsets[None, :]]                       # (num_labels, per_class)
    return np.sort(take[:, :n_train].ravel()), np.sort(take[:, n_train:].ravel())


class FmceNet(nn.Module):
    """FMCE-Net: predicts the convergence phase (K classes) of a (B, C, H, W) backbone feature map.

    Each stage is a 3x3 conv (padding 1) halving the channels, then 2x2 max-pool and ReLU; for inputs with more
    than 1024 channels an extra stage first reduces them to 1024, as the paper does for ResNet-50 maps. After
    ``num_stages`` stages a global average pool and a linear layer give K logits (the paper's 7x7 maps reach
    1x1 after two stages, so the pool is then an identity).
    """

    def __init__(self, in_channels: int, num_phases: int = 10, num_stages: int = 2) -> None:
        super().__init__()
        if in_channels < 2 ** num_stages:
            raise FmcsError(f"in_channels={in_channels} too small for {num_stages} halving stages")
        layers: list[nn.Module] = []
        c = in_channels
        if c > 1024:
            layers += [nn.Conv2d(c, 1024, 3, padding=1), nn.ReLU()]
            c = 1024
        for _ in range(num_stages):
            layers += [nn.Conv2d(c, c // 2, 3, padding=1), nn.MaxPool2d(2, ceil_mode=False), nn.ReLU()]
            c //= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_phases)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)                                                # (B, C', H', W')
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
