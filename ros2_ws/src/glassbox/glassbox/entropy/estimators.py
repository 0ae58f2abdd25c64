"""Differential entropy estimators (nats), differentiable with torch autograd, batched, on any device.

Three estimators, from accurate and costly to crude and cheap:

``knn_entropy``
    Kozachenko-Leonenko k-nearest-neighbour estimator (Eloss paper, Eq. 4; Eq. 3 as ``variant="eq3"``)::

        H = -psi(k) + psi(n) + log V_d + (d/n) * sum_i log r_k(x_i)          (eq4)
        H = log(n - 1) + gamma + log V_d + (d/n) * sum_i log r_1(x_i)        (eq3)

    ``r_k(x_i)`` is the Euclidean distance from sample i to its k-th nearest *other* sample, ``V_d`` the volume
    of the unit d-ball. ``log V_d = (d/2) log(pi) - lgamma(d/2 + 1)`` is computed in log space (``V_d`` itself
    underflows for d of a few hundred). Neighbours are *selected* by brute force from matrix products
    (ranking ``|x_j|^2 - 2 x_i.x_j`` per row i; ``|x_i|^2`` cannot change a row's order) in chunks of rows, so
    memory stays at ``chunk_rows * n`` per set whatever n and d. Self-matches are masked with +inf on the
    diagonal (never "drop the first index", which breaks on duplicates). The selection runs on centred samples
    (distances unchanged, ranking accurate under large offsets). The selected distance is then *recomputed* as
    ``|x_i - x_j|`` from the samples: exact (no cancellation as in the product form) and what autograd
    differentiates, the neighbour indices being constants (a subgradient, as for any kNN statistic). So
    ``H(aX + b) = H(X) + d log|a|`` holds to rounding.

    Duplicates: a zero distance would give ``log 0 = -inf``. Distances are clamped from below at ``sqrt(eps)``
    (default eps 1e-12 on squared distances, i.e. distances of 1e-6), so duplicated rows and dead (all-zero)
    channels give a finite, very low entropy and a zero (not NaN) gradient through the clamped pairs.

    Bias: consistent as n grows at fixed d; at fixed n the bias grows with d (about +0.5 nats at d = 20,
    n = 10,000 for a Gaussian), and for d >> n all distances concentrate and the estimate exceeds the truth by
    roughly (d/2) log 2 for isotropic Gaussians. In that regime (channels as samples, d = H*W) it is a
    differentiable statistic of the channel geometry whose offset cancels in layer-to-layer deltas only between
    layers of equal d. Cost: O(n^2 d) multiply-adds and O(n^2) memory in chunks.

``gaussian_entropy``
    Entropy of a Gaussian with the samples' shrunk covariance: ``0.5 * logdet(2 pi e S)``, with
    ``S = (1 - s) C + s (tr C / d) I``, C the maximum-likelihood covariance (divide by n) and s the
    Ledoit-Wolf shrinkage (or a fixed value). The log-determinant comes from a Cholesky factor; when d > n the
    same value is computed from the n x n Gram matrix (Sylvester's determinant identity), so the cost is
    O(n d min(n, d) + min(n, d)^3). Exact for Gaussian data up to estimation error; for other data it is an
    upper bound on the true entropy (the Gaussian maximises entropy at a given covariance).

``channel_entropy``
    Sum of per-dimension Gaussian entropies, ``sum_j 0.5 log(2 pi e var_j)``: assumes independent Gaussian
    dimensions, ignores every correlation (so it upper-bounds the Gaussian estimate). O(n d); the cheapest.

All three take samples of shape (n, d), returning a scalar, or (b, n, d), returning (b,). ``dtype`` selects the
computation precision (e.g. ``torch.float64`` to accumulate in double); the result has that dtype. Without it,
float32 and float64 inputs are used as they are, and integer or 16-bit float inputs are computed in float32.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

EULER_GAMMA = 0.5772156649015329
_LOG_2PIE = math.log(2.0 * math.pi * math.e)


class EntropyError(ValueError):
    """Samples or estimator parameters that the entropy estimators cannot work with."""


def log_unit_ball_volume(d: int) -> float:
    """log of the volume of the unit ball in R^d, via lgamma (finite for any d >= 1)."""
    if d < 1:
        raise EntropyError(f"dimension must be >= 1, got {d}")
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


@lru_cache(maxsize=1024)
def _digamma(x: int) -> float:
    return float(torch.special.digamma(torch.tensor(float(x), dtype=torch.float64)))


def _as_batch(samples: Tensor, dtype: torch.dtype | None, name: str) -> tuple[Tensor, bool]:
    if not isinstance(samples, Tensor):
        raise EntropyError(f"{name}: samples must be a torch.Tensor, got {type(samples).__name__}")
    if samples.dim() not in (2, 3):
        raise EntropyError(f"{name}: samples must have shape (n, d) or (b, n, d), got {tuple(samples.shape)}")
    if not samples.is_floating_point() or (dtype is None and samples.element_size() < 4):
        samples = samples.float()                  # integers and 16-bit floats are estimated in float32
    if dtype is not None:
        samples = samples.to(dtype)
    squeeze = samples.dim() == 2
    return (samples.unsqueeze(0) if squeeze else samples), squeeze


def _kth_neighbour_index(x: Tensor, k: int, max_chunk_elements: int) -> Tensor:
    """Index of the k-th nearest other sample of every sample; x (b, n, d) -> (b, n) int64 (no grad).

    Ranks ``|x_j|^2 - 2 x_i.x_j`` per row i: the row's own ``|x_i|^2`` does not change the order, so it is
    never added. One ``baddbmm`` per chunk of rows, the diagonal masked with +inf in place.
    """
    b, n, _ = x.shape
    sq = (x * x).sum(-1)[:, None, :]                                       # (b, 1, n)
    xt = x.transpose(1, 2)                                                 # (b, d, n)
    rows = max(1, min(n, max_chunk_elements // max(1, b * n)))
    out = torch.empty(b, n, dtype=torch.long, device=x.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        score = torch.baddbmm(sq, x[:, start:stop], xt, alpha=-2.0)       # (b, m, n)
        score.diagonal(offset=start, dim1=1, dim2=2).fill_(float("inf"))
        if k == 1:
            out[:, start:stop] = score.argmin(-1)
        else:
            out[:, start:stop] = score.topk(k, dim=-1, largest=False, sorted=True).indices[..., k - 1]
    return out


def knn_entropy(samples: Tensor, k: int = 1, variant: str = "eq4", eps: float = 1e-12,
                dtype: torch.dtype | None = None, max_chunk_elements: int = 1 << 22) -> Tensor:
    """Kozachenko-Leonenko kNN differential entropy in nats; (n, d) -> scalar, (b, n, d) -> (b,).

    ``variant="eq4"``: the k-NN form (digamma terms exact); ``variant="eq3"``: the paper's 1-NN form with
    ``log(n - 1) + gamma`` (requires k = 1; differs from eq4 by ``log(n-1) - psi(n)``, less than 1/(n-1)).
    ``eps`` clamps squared neighbour distances from below (duplicates). ``max_chunk_elements`` bounds the
    size of the distance block held at once (elements, per call).
    """
    x, squeeze = _as_batch(samples, dtype, "knn_entropy")
    b, n, d = x.shape
    if variant not in ("eq3", "eq4"):
        raise EntropyError(f"knn_entropy: variant must be 'eq3' or 'eq4', got {variant!r}")
    if not isinstance(k, int) or k < 1:
        raise EntropyError(f"knn_entropy: k must be a positive int, got {k!r}")
    if variant == "eq3" and k != 1:
        raise EntropyError(f"knn_entropy: variant 'eq3' is the 1-NN estimator, got k={k}")
    if n < k + 1:
        raise EntropyError(f"knn_entropy: need more samples than k (n={n}, k={k})")
    if eps <= 0.0:
        raise EntropyError(f"knn_entropy: eps must be > 0, got {eps}")
    with torch.no_grad():
        xs = x.detach()
        idx = _kth_neighbour_index(xs - xs.mean(dim=1, keepdim=True), k, max_chunk_elements)   # (b, n)
    mean_log_r = mean_log_neighbour_distance(x, idx, eps)                   # (b,)
    const = math.log(n - 1) + EULER_GAMMA if variant == "eq3" else _digamma(n) - _digamma(k)
    h = const + log_unit_ball_volume(d) + d * mean_log_r
    return h[0] if squeeze else h


def mean_log_neighbour_distance(x: Tensor, idx: Tensor, eps: float = 1e-12,
                                weights: Tensor | None = None) -> Tensor:
    """``mean_i log max(|x_i - x_idx[i]|, sqrt(eps))`` per set; x (..., n, d), idx (..., n) -> (...).

    The distance is recomputed from the samples (exact differences, what autograd differentiates); the
    neighbours are gathered as whole rows of the flattened sets (one row copy each, also in ONNX Runtime).
    ``weights`` (..., n): a weighted sum over i instead of the mean."""
    n, d = x.shape[-2:]
    rows = x.reshape(-1, d)                                                 # (sets * n, d)
    first = torch.arange(rows.shape[0] // n, device=x.device)[:, None] * n  # (sets, 1) first row of each set
    flat = (idx.reshape(-1, n) + first).reshape(-1)
    diff = x - rows.index_select(0, flat).reshape(x.shape)
    log_r = 0.5 * torch.log((diff * diff).sum(-1).clamp_min(eps))          # (..., n) log max(r, sqrt(eps))
    return log_r.mean(-1) if weights is None else (log_r * weights).sum(-1)


def knn_offset(n: int, d: int, k: int = 1) -> float:
    """The constant part of the eq4 estimate, ``psi(n) - psi(k) + log V_d``: ``H = offset + d * mean log r``."""
    return _digamma(n) - _digamma(k) + log_unit_ball_volume(d)


def knn_mean_log_distance(x: Tensor, k: int = 1, eps: float = 1e-12, counts: Tensor | None = None) -> Tensor:
    """``mean log r_k`` of sample sets x (..., n, d) -> (...), in one dense block and without in-place
    operations, so that it traces into an ONNX graph: the selection and distance of :func:`knn_entropy`
    (``knn_entropy = knn_offset(n, d, k) + d * knn_mean_log_distance``).

    ``counts`` (float, broadcastable to ``x.shape[:-2]``): the number of real samples of each set, the rest
    being zero rows that pad sets of different n into one block; they are never neighbours and not averaged,
    so every set gets the value it would get alone.
    """
    n = x.shape[-2]
    mean = x.mean(-2, keepdim=True) if counts is None else x.sum(-2, keepdim=True) / counts[..., None, None]
    xc = x - mean
    score = (xc * xc).sum(-1).unsqueeze(-2) - 2.0 * (xc @ xc.transpose(-1, -2))         # (..., n, n)
    ar = torch.arange(n, device=x.device)
    eye = ar[:, None] == ar[None, :]
    score = score + torch.where(eye, float("inf"), 0.0).to(x.dtype)                      # no self-match
    weights = None
    if counts is not None:
        valid = torch.arange(n, device=x.device) < counts[..., None]                    # (..., n)
        score = score + torch.where(valid, 0.0, float("inf")).to(x.dtype).unsqueeze(-2)
        weights = valid.to(x.dtype) / counts[..., None]
    if k == 1:
        idx = score.argmin(-1)
    else:
        idx = score.topk(k, dim=-1, largest=False, sorted=True).indices[..., k - 1]
    return mean_log_neighbour_distance(x, idx, eps, weights)


def _ledoit_wolf_shrinkage(xc: Tensor) -> Tensor:
    """Ledoit-Wolf (2004) optimal shrinkage towards (tr C / d) I for centred samples; (b, n, d) -> (b,)."""
    b, n, d = xc.shape
    if d <= n:
        cov = xc.transpose(1, 2) @ xc / n                                  # (b, d, d)
        cov_sq_sum = (cov * cov).sum((1, 2))
    else:
        gram = xc @ xc.transpose(1, 2) / n                                 # (b, n, n): same nonzero spectrum
        cov_sq_sum = (gram * gram).sum((1, 2))
    mu = (xc * xc).sum((1, 2)) / (n * d)                                   # tr C / d
    delta2 = cov_sq_sum - 2.0 * mu * mu * d + mu * mu * d                  # |C - mu I|_F^2
    x2 = (xc * xc).sum(-1)                                                 # (b, n) squared norms
    # beta = (1/n^2) sum_i |x_i x_i^T - C|_F^2 = (1/n^2) (sum_i |x_i|^4) - |C|_F^2 / n
    beta2 = ((x2 * x2).sum(-1) / (n * n) - cov_sq_sum / n).clamp_min(0.0)
    beta2 = torch.minimum(beta2, delta2)
    return torch.where(delta2 > 0, beta2 / delta2.clamp_min(torch.finfo(xc.dtype).tiny), torch.ones_like(delta2))


def gaussian_entropy(samples: Tensor, shrinkage: float | None = None, eps: float = 1e-12,
                     dtype: torch.dtype | None = None) -> Tensor:
    """Gaussian (shrunk-covariance log-det) entropy in nats; (n, d) -> scalar, (b, n, d) -> (b,).

    ``shrinkage`` in [0, 1] blends the ML covariance with ``(tr C / d) I``; ``None`` uses the Ledoit-Wolf
    estimate (computed without gradient). ``eps`` is added to the diagonal scale so that an all-constant
    sample set stays finite.
    """
    x, squeeze = _as_batch(samples, dtype, "gaussian_entropy")
    b, n, d = x.shape
    if n < 2:
        raise EntropyError(f"gaussian_entropy: need at least 2 samples, got {n}")
    if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
        raise EntropyError(f"gaussian_entropy: shrinkage must be in [0, 1], got {shrinkage}")
    xc = x - x.mean(dim=1, keepdim=True)
    if shrinkage is None:
        with torch.no_grad():
            s = _ledoit_wolf_shrinkage(xc.detach())
    else:
        s = torch.full((b,), float(shrinkage), dtype=x.dtype, device=x.device)
    mu = (xc * xc).sum((1, 2)) / (n * d)                                   # (b,) tr C / d
    a = s * mu + eps                                                       # (b,) scale of the identity part
    c = (1.0 - s) / n                                                      # (b,) weight of X^T X
    m = min(n, d)
    eye = torch.eye(m, dtype=x.dtype, device=x.device)
    if d <= n:
        mat = a[:, None, None] * eye + c[:, None, None] * (xc.transpose(1, 2) @ xc)       # (b, d, d)
        chol, info = torch.linalg.cholesky_ex(mat)
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)
    else:
        # log det(a I_d + c X^T X) = d log a + log det(I_n + (c/a) X X^T)
        mat = eye + (c / a)[:, None, None] * (xc @ xc.transpose(1, 2))                    # (b, n, n)
        chol, info = torch.linalg.cholesky_ex(mat)
        logdet = d * torch.log(a) + 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)
    if bool((info != 0).any()):
        raise EntropyError("gaussian_entropy: shrunk covariance is not positive definite "
                           "(non-finite samples, or shrinkage 0 with fewer samples than dimensions)")
    h = 0.5 * (d * _LOG_2PIE + logdet)
    return h[0] if squeeze else h


def channel_entropy(samples: Tensor, eps: float = 1e-12, dtype: torch.dtype | None = None) -> Tensor:
    """Sum of per-dimension Gaussian entropies in nats; (n, d) -> scalar, (b, n, d) -> (b,).

    Variance over the n samples (divide by n), floored at ``eps`` so constant dimensions stay finite.
    """
    x, squeeze = _as_batch(samples, dtype, "channel_entropy")
    n = x.shape[1]
    if n < 2:
        raise EntropyError(f"channel_entropy: need at least 2 samples, got {n}")
    xc = x - x.mean(dim=1, keepdim=True)
    var = (xc * xc).mean(1).clamp_min(eps)                                 # (b, d)
    h = 0.5 * (_LOG_2PIE + torch.log(var)).sum(-1)
    return h[0] if squeeze else h


ESTIMATORS = {"knn": knn_entropy, "gaussian": gaussian_entropy, "channel": channel_entropy}
