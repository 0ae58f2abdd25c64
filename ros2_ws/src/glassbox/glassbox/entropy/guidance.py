"""Closed-form entropy changes of linear layers and the entropy-guidance penalty (Meni et al., arXiv 2308.14938).

Weight-only quantities: no activations, no forward pass, cost independent of the batch.

- Dense layer W (m x n, either layout): with the square part ``W_s = W[:k, :k]``, k = min(m, n), the
  augmented map (output plus passed-through inputs for wide W, padded input for tall W) changes entropy by
  ``log|det W_s|`` (h(AX) = h(X) + log|det A|). Computed with ``slogdet``, never ``det``: for a
  Glorot-initialised 784 x 100 encoder ``det`` underflows to 0 in float32 while ``log|det|`` is about -130.
- 2-D convolution, stride 1, no padding ("valid" cross-correlation) of an l x w input with a p x q filter:
  ``(l - p + 1)(w - q + 1) log|c11|``, c11 = the filter's top-left tap ``weight[o, i, 0, 0]`` (PyTorch
  layout), per (output, input) channel pair. The rule ignores padding, stride and activations, as the paper
  does.

The paper's loss formulas were lost from the available text; ``guidance_penalty`` is the phi of a reconstruction
from the surrounding prose, with every free choice a parameter:

    L = sum_dense lambda_l * phi(W_s,l) + sum_conv sum_(o,i) lambda_l,o * phi(c11_l,o,i)

with ``phi = -log|x|`` (mode "log": lambda > 0 penalises entropy *decrease*, i.e. preserves entropy; lambda < 0
encourages reduction), or the bounded surrogate ``phi = 1 / (|x| + a)`` (mode "reciprocal"), which has its
maximum 1/a at x = 0 instead of a pole, falls steeper than -log|x| near 0 for small a, and changes sign relative
to -log|x| only for |x| > 1. For a dense layer the surrogate is applied to the geometric-mean gain
``|det W_s|^(1/k) = exp(log|det W_s| / k)``, because |det W_s| itself underflows for wide layers and a
surrogate of it would be inert (constant, zero gradient). In "log" mode ``log|x|`` is clamped below at
``log_floor`` so a dead filter cannot produce an infinite loss. The spatial factor of the conv rule is a
per-layer constant and is absorbed into lambda.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

GUIDANCE_MODES = ("log", "reciprocal")


class GuidanceError(ValueError):
    """Entropy-guidance layers or parameters that do not fit the model."""


def dense_entropy_change(weight: Tensor) -> Tensor:
    """``log|det W_s|`` of a dense weight (any 2-D layout), W_s the leading k x k block, k = min(m, n)."""
    if weight.dim() != 2:
        raise GuidanceError(f"dense weight must be 2-D, got shape {tuple(weight.shape)}")
    k = min(weight.shape)
    return torch.linalg.slogdet(weight[:k, :k])[1]


def conv_entropy_change(weight: Tensor, in_hw: tuple[int, int] | None = None, eps: float = 1e-30) -> Tensor:
    """Per-(out, in) ``log|c11|`` of a conv weight (C_out, C_in, p, q); times (l-p+1)(w-q+1) with ``in_hw``.

    ``eps`` floors |c11| so an exactly-zero tap gives a finite value.
    """
    if weight.dim() != 4:
        raise GuidanceError(f"conv weight must be (C_out, C_in, p, q), got shape {tuple(weight.shape)}")
    log_c11 = torch.log(weight[:, :, 0, 0].abs().clamp_min(eps))           # (C_out, C_in)
    if in_hw is None:
        return log_c11
    (l, w), (p, q) = in_hw, weight.shape[2:]
    if l < p or w < q:
        raise GuidanceError(f"input {in_hw} is smaller than the filter {(p, q)}")
    return (l - p + 1) * (w - q + 1) * log_c11


def guidance_penalty(log_abs: Tensor, mode: str = "log", a: float = 0.1, log_floor: float = -30.0,
                     dim: int = 1) -> Tensor:
    """phi of a log-magnitude ``log|x|``: ``-max(log|x|, floor)`` ("log") or ``1 / (|x|^(1/dim) + a)``.

    ``dim`` is k for a dense determinant (the surrogate then acts on the geometric-mean gain) and 1 for a tap.
    """
    if mode == "log":
        return -log_abs.clamp_min(log_floor)
    if mode == "reciprocal":
        if a <= 0.0:
            raise GuidanceError(f"surrogate constant a must be > 0, got {a}")
        return 1.0 / (torch.exp(log_abs / dim) + a)
    raise GuidanceError(f"mode must be one of {GUIDANCE_MODES}, got {mode!r}")


def conv_entropy_statistics(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Per ``nn.Conv2d`` (in module order): mean and std of log|c11| over its filters (the paper's Fig. 1)."""
    out = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Conv2d):
                v = conv_entropy_change(mod.weight).flatten().double()
                out[name] = (float(v.mean()), float(v.std(unbiased=False)))
    return out
