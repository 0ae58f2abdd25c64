"""Forming entropy samples from feature maps.

A feature map of shape (B, C, *spatial) becomes one sample set per example, shape (B, n, d):

- ``mode="channels"`` (the Eloss paper): every channel's flattened map is one sample, n = C, d = prod(spatial)
  (d = H*W for a conv map). The paper's choice; d is usually much larger than n.
- ``mode="positions"``: every spatial position's channel vector is one sample, n = prod(spatial), d = C. The
  classical setting of the estimators (many samples, modest dimension).

A 2-D input (B, F), such as a dense layer's output, has no per-example structure: the batch itself is the
sample set (n = B, d = F), returned as (1, B, F), whatever the mode.

``max_samples`` and ``max_dim`` subsample n and d without replacement, with index sets drawn once from a
``torch.Generator`` seeded with ``seed`` (so the same coordinates are used on every frame and every example,
and profiles are comparable over time) and kept in increasing order. The drawn indices are cached per
(n, d, limits, seed, device), so a probe pays for the draw once.

``stratified_samples`` is the deployed variant (what an exported graph computes, ``glassbox.export``): the
same seeded channel subset, and spatial positions drawn one per stratum (``max_dim`` runs of about
``S / max_dim`` consecutive row-major positions) at a seeded offset, computed from S with integer arithmetic, so one traced graph draws
them for any input size and the eager module draws the same ones. It is a random subset of the positions too,
spread evenly over the map: estimates differ from ``feature_samples``' only by sampling error.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from .estimators import EntropyError

SAMPLE_MODES = ("channels", "positions")
_OFFSET_BITS = 20                          # resolution of the seeded in-stratum offsets (fractions of 2**20)


@lru_cache(maxsize=256)
def _subset(size: int, limit: int | None, seed: int, salt: int) -> Tensor | None:
    """Sorted random subset of range(size) of length ``limit`` (None when no subsampling is needed)."""
    if limit is None or limit >= size:
        return None
    # A constant of the graph when called while an export traces it: the draw itself is never recorded (the
    # tracer cannot hold a Generator), only the indices it gives.
    tracing = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + salt)
        return torch.randperm(size, generator=gen)[:limit].sort().values
    finally:
        torch._C._set_tracing_state(tracing)


@lru_cache(maxsize=256)
def _flat_index(shape: tuple[int, int, int], strides: tuple[int, int, int], max_samples: int | None,
                max_dim: int | None, seed: int, device: str) -> Tensor | None:
    """Offsets into the flat storage of the subsampled (B, n', d') sample sets (None: no subsampling)."""
    b, n, d = shape
    rows = _subset(n, max_samples, seed, 1)
    cols = _subset(d, max_dim, seed, 2)
    if rows is None and cols is None:
        return None
    rows = torch.arange(n) if rows is None else rows
    cols = torch.arange(d) if cols is None else cols
    offsets = (torch.arange(b)[:, None, None] * strides[0] + rows[None, :, None] * strides[1]
               + cols[None, None, :] * strides[2])
    return offsets.reshape(-1).to(device)


def feature_samples(fmap: Tensor, mode: str = "channels", max_samples: int | None = None,
                    max_dim: int | None = None, seed: int = 0) -> Tensor:
    """Sample sets of a feature map: (B, C, *spatial) -> (B, n, d); (B, F) -> (1, B, F).

    ``max_samples`` / ``max_dim`` cap n / d by seeded random subsampling (``None``: keep all). The result is a
    view of ``fmap`` or a gather from it (one 1-D ``index_select`` on its storage with cached offsets), so
    gradients flow back to the feature map.
    """
    if not isinstance(fmap, Tensor):
        raise EntropyError(f"feature_samples: expected a torch.Tensor, got {type(fmap).__name__}")
    if mode not in SAMPLE_MODES:
        raise EntropyError(f"feature_samples: mode must be one of {SAMPLE_MODES}, got {mode!r}")
    for name, value in (("max_samples", max_samples), ("max_dim", max_dim)):
        if value is not None and value < 1:
            raise EntropyError(f"feature_samples: {name} must be >= 1 or None, got {value}")
    if fmap.dim() < 2:
        raise EntropyError(f"feature_samples: need a (B, F) or (B, C, ...) tensor, got {tuple(fmap.shape)}")
    base = fmap.contiguous()
    if base.dim() == 2:
        x = base.unsqueeze(0)                                              # (1, B, F)
    else:
        b, c = base.shape[:2]
        x = base.reshape(b, c, -1)                                         # (B, C, S)
        if mode == "positions":
            x = x.transpose(1, 2)                                          # (B, S, C)
    shape = tuple(x.shape)
    idx = _flat_index(shape, tuple(x.stride()), max_samples, max_dim, seed, str(x.device))
    if idx is None:
        return x
    n = shape[1] if max_samples is None else min(shape[1], max_samples)
    d = shape[2] if max_dim is None else min(shape[2], max_dim)
    return base.reshape(-1).index_select(0, idx).reshape(shape[0], n, d)


@lru_cache(maxsize=64)
def _stratum_offsets(limit: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 3)
    return torch.randint(0, 1 << _OFFSET_BITS, (limit,), generator=gen, dtype=torch.int64)


def stratified_positions(size: Tensor, limit: int, seed: int) -> Tensor:
    """``min(size, limit)`` increasing positions in ``range(size)``: position j lies in the j-th of that many
    equal strata, at the seeded offset j (``size`` a 0-dim int64 tensor, traced in an exported graph; every
    position when ``size <= limit``)."""
    m = torch.clamp(size, max=limit)
    j = torch.arange(m)
    lo, hi = (j * size) // m, ((j + 1) * size) // m                        # stratum j: [lo, hi), hi > lo
    return lo + (_stratum_offsets(limit, seed)[:m] * (hi - lo)) // (1 << _OFFSET_BITS)


def stratified_samples(fmap: Tensor, max_samples: int | None, max_dim: int | None, seed: int) -> Tensor:
    """Channels-as-samples sets of a (B, C, *spatial) map, (B, n, d): the seeded channel subset of
    ``feature_samples`` and ``stratified_positions`` (traceable; see the module docstring)."""
    c = fmap.shape[1]
    x = fmap.flatten(2)                                                     # (B, C, S)
    if max_dim is not None:            # gathered along the last axis: a transpose would copy the whole map
        size = torch._shape_as_tensor(x)[2]
        x = x.index_select(2, stratified_positions(size, max_dim, seed).to(x.device))   # (B, C, d)
    rows = _subset(c, max_samples, seed, 1)
    return x if rows is None else x.index_select(1, rows.to(x.device))
