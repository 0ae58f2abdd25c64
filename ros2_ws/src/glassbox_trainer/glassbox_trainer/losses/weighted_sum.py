"""A named weighted sum of loss terms that logs every term and prints its own formula.

``WeightedSum({"task": 1.0, "eloss_var": 0.1, "kd": 0.5})(terms)`` returns ``(total, logged)`` where
``total = sum_i w_i * terms[i]`` (a tensor keeping the graph) and ``logged`` maps every term name to its raw
value, ``<name>_weighted`` to ``w_i * value`` and ``"total"`` to the total, all as detached Python floats.
Terms with weight 0 must not be passed (the caller skips computing them, so a 0 weight is bit-identical to
leaving the term out). ``scales`` multiplies weights for one call (weight schedules).
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor


class WeightedSumError(ValueError):
    """Terms passed do not match the configured weights."""


class WeightedSum:
    """``total = sum_i w_i * term_i`` over named terms; ``str()`` is the formula."""

    def __init__(self, weights: Mapping[str, float]):
        if not weights:
            raise WeightedSumError("a weighted sum needs at least one term")
        self.weights = {str(k): float(v) for k, v in weights.items()}

    @property
    def active(self) -> list[str]:
        """Names of the terms with a non-zero weight (the ones to compute)."""
        return [k for k, w in self.weights.items() if w != 0.0]

    def __call__(self, terms: Mapping[str, Tensor],
                 scales: Mapping[str, float] | None = None) -> tuple[Tensor, dict[str, float]]:
        unknown = sorted(set(terms) - set(self.weights))
        if unknown:
            raise WeightedSumError(f"term '{unknown[0]}' has no weight (weighted terms: {', '.join(self.weights)})")
        missing = [k for k in self.active if k not in terms]
        if missing:
            raise WeightedSumError(f"term '{missing[0]}' has weight {self.weights[missing[0]]} but was not given")
        scales = scales or {}
        total = None
        logged: dict[str, float] = {}
        for name, value in terms.items():
            w = self.weights[name] * float(scales.get(name, 1.0))
            part = w * value
            total = part if total is None else total + part
            logged[name] = float(value.detach())
            logged[f"{name}_weighted"] = float(part.detach())
        logged["total"] = float(total.detach())
        return total, logged

    def formula(self) -> str:
        """E.g. ``total = 1*task + 0.1*eloss_var + 0.5*kd`` (terms with weight 0 omitted)."""
        parts = [f"{w:g}*{k}" for k, w in self.weights.items() if w != 0.0]
        return "total = " + " + ".join(parts) if parts else "total = 0"

    def __str__(self) -> str:
        return self.formula()

    def __repr__(self) -> str:
        return f"WeightedSum({self.weights!r})"


__all__ = ["WeightedSum", "WeightedSumError"]
