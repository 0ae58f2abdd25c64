"""Closed-form entropy changes of linear layers and the entropy-guidance loss (Meni et al., arXiv 2308.14938).

Weight-only quantities: no activations, no forward pass, cost independent of the batch.

- Dense layer W (m x n, either layout): with the square part ``W_s = W[:k, :k]``, k = min(m, n), the
  augmented map (output plus passed-through inputs for wide W, padded input for tall W) changes entropy by
  ``log|det W_s|`` (h(AX) = h(X) + log|det A|). Computed with ``slogdet``, never ``det``: for a
  Glorot-initialised 784 x 100 encoder ``det`` underflows to 0 in float32 while ``log|det|`` is about -130.
- 2-D convolution, stride 1, no padding ("valid" cross-correlation) of an l x w input with a p x q filter:
  ``(l - p + 1)(w - q + 1) log|c11|``, c11 = the filter's top-left tap ``weight[o, i, 0, 0]`` (PyTorch
  layout), per (output, input) channel pair. The rule ignores padding, stride and activations, as the paper
  does.

The paper's loss formulas were lost from the available text; what is implemented is a reconstruction from the
surrounding prose, with every free choice a parameter:

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

from collections.abc import Mapping

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


class GuidanceLoss(nn.Module):
    """Entropy-guidance regulariser on named layers of ``model`` (reads parameters only).

    ``dense``: {module name: lambda} for ``nn.Linear`` layers; ``conv``: {module name: lambda or a (C_out,)
    tensor of per-filter lambdas} for ``nn.Conv2d`` layers. Names as in ``model.named_modules()``.
    ``forward()`` returns ``(total, terms)``: terms are detached floats, per layer the raw entropy change
    (``dH/<name>``: log|det W_s|, or the mean log|c11|) and the weighted ``guidance`` total.
    """

    def __init__(self, model: nn.Module, dense: Mapping[str, float] | None = None,
                 conv: Mapping[str, float | Tensor] | None = None, mode: str = "log", a: float = 0.1,
                 log_floor: float = -30.0) -> None:
        super().__init__()
        if mode not in GUIDANCE_MODES:
            raise GuidanceError(f"mode must be one of {GUIDANCE_MODES}, got {mode!r}")
        modules = dict(model.named_modules())
        self._dense: list[tuple[str, nn.Module, float]] = []
        self._conv: list[tuple[str, nn.Module, Tensor | float]] = []
        for name, lam in (dense or {}).items():
            mod = modules.get(name)
            if not isinstance(mod, nn.Linear):
                raise GuidanceError(f"dense layer '{name}' is not an nn.Linear in the model")
            self._dense.append((name, mod, float(lam)))
        for name, lam in (conv or {}).items():
            mod = modules.get(name)
            if not isinstance(mod, nn.Conv2d):
                raise GuidanceError(f"conv layer '{name}' is not an nn.Conv2d in the model")
            if isinstance(lam, Tensor):
                if lam.shape != (mod.out_channels,):
                    raise GuidanceError(f"conv layer '{name}': per-filter lambdas must have shape "
                                        f"({mod.out_channels},), got {tuple(lam.shape)}")
                lam = lam.detach().clone()
            else:
                lam = float(lam)
            self._conv.append((name, mod, lam))
        self.mode = mode
        self.a = float(a)
        self.log_floor = float(log_floor)

    def forward(self) -> tuple[Tensor, dict[str, float]]:
        params = [p for _, m, _ in self._dense + self._conv for p in m.parameters()]
        total = params[0].new_zeros(()) if params else torch.zeros(())
        terms: dict[str, float] = {}
        for name, mod, lam in self._dense:
            w = mod.weight
            logdet = dense_entropy_change(w)
            total = total + lam * guidance_penalty(logdet, self.mode, self.a, self.log_floor, dim=min(w.shape))
            terms[f"dH/{name}"] = float(logdet.detach())
        for name, mod, lam in self._conv:
            log_c11 = conv_entropy_change(mod.weight)                      # (C_out, C_in)
            pen = guidance_penalty(log_c11, self.mode, self.a, self.log_floor).sum(1)   # (C_out,)
            weights = lam.to(pen) if isinstance(lam, Tensor) else lam
            total = total + (weights * pen).sum()
            terms[f"dH/{name}"] = float(log_c11.detach().mean())
        terms["guidance"] = float(total.detach())
        return total, terms


def conv_entropy_statistics(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Per ``nn.Conv2d`` (in module order): mean and std of log|c11| over its filters (the paper's Fig. 1)."""
    out = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Conv2d):
                v = conv_entropy_change(mod.weight).flatten().double()
                out[name] = (float(v.mean()), float(v.std(unbiased=False)))
    return out
