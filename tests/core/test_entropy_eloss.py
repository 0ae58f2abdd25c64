"""Eloss terms (variance, direction as printed, bounded direction) and their sums over layer groups."""
import numpy as np
import pytest
import torch
from torch import nn

from glassbox.entropy import (ElossError, EntropyProbe, ProbeConfig, eloss_direction, eloss_direction_bounded,
                              eloss_terms, eloss_variance, entropy_deltas)


def test_variance_zero_for_equal_deltas_and_matches_numpy():
    h = torch.tensor([10.0, 8.5, 7.0, 5.5, 4.0], dtype=torch.float64)     # arithmetic progression
    d = entropy_deltas(h)
    assert d.shape == (4,)
    assert float(eloss_variance(d)) == 0.0
    rng = np.random.default_rng(0)
    deltas = rng.standard_normal(6)
    assert float(eloss_variance(deltas)) == pytest.approx(np.var(deltas))
    assert float(eloss_variance(deltas, unbiased=True)) == pytest.approx(np.var(deltas, ddof=1))
    assert float(eloss_variance(deltas + 3.0)) == pytest.approx(np.var(deltas))   # offsets of dH
    hh = rng.standard_normal(7)
    assert float(eloss_variance(entropy_deltas(hh + 100.0))) == pytest.approx(float(eloss_variance(np.diff(hh))))
    assert float(eloss_variance([1.5])) == 0.0 and float(eloss_variance([])) == 0.0


def test_direction_as_printed_is_sign_symmetric_and_nonpositive():
    d = np.array([-1.0, 2.0, -0.5])
    assert float(eloss_direction(d)) == pytest.approx(-5.25)
    assert float(eloss_direction(-d)) == float(eloss_direction(d))
    assert float(eloss_direction(np.zeros(3))) == 0.0
    assert float(eloss_direction(np.array([0.0, 1e-3]))) < 0.0


def test_bounded_direction_rewards_decrease_only_and_is_bounded():
    d = torch.tensor([-0.5, 0.2, 1.0], dtype=torch.float64, requires_grad=True)
    value = eloss_direction_bounded(d, tau=0.5)
    value.backward()
    assert -1.0 < float(value.detach()) < 1.0
    assert (d.grad > 0).all()                                 # lowering any delta lowers the term
    huge = eloss_direction_bounded(torch.full((4,), -1e6), tau=1.0)
    assert float(huge) == pytest.approx(-1.0) and float(huge) >= -1.0
    assert float(eloss_direction_bounded(torch.tensor([-1.0, -1.0]))) < float(
        eloss_direction_bounded(torch.tensor([1.0, 1.0])))
    with pytest.raises(ElossError):
        eloss_direction_bounded(d, tau=0.0)


def test_eloss_terms_sum_groups_per_direction_and_per_dimension():
    h = {n: torch.tensor(v, dtype=torch.float64) for n, v in
         {"a": 10.0, "b": 9.0, "c": 7.0, "d": 5.0, "e": 4.0, "f": 3.0}.items()}
    groups = [["a", "b", "c"], ["d", "e", "f"]]
    terms = eloss_terms(h, groups, direction="printed")
    assert set(terms) == {"eloss_var", "eloss_dir"}
    assert float(terms["eloss_var"]) == pytest.approx(np.var([-1.0, -2.0]) + np.var([-1.0, -1.0]))
    assert float(terms["eloss_dir"]) == pytest.approx(-(1 + 4) - (1 + 1))
    bounded = eloss_terms(h, groups, direction="bounded", tau=2.0)
    want = np.tanh(np.array([-1.0, -2.0]) / 2).mean() + np.tanh(np.array([-1.0, -1.0]) / 2).mean()
    assert float(bounded["eloss_dir"]) == pytest.approx(want)
    assert float(eloss_terms(h, groups[:1], unbiased=True)["eloss_var"]) == pytest.approx(np.var([-1, -2], ddof=1))
    per_dim = eloss_terms(h, [["a", "b", "c"]], dims={"a": 1, "b": 1, "c": 2})
    assert float(per_dim["eloss_var"]) == pytest.approx(np.var([-1.0, 3.5 - 9.0]))
    with pytest.raises(ElossError, match="no entropy for layer 'b'"):
        eloss_terms({"a": h["a"]}, [["a", "b"]])
    with pytest.raises(ElossError, match="no entropy for layer 'c'"):
        eloss_terms(h, [["a", "b", "c"]], dims={"a": 1, "b": 1})
    with pytest.raises(ElossError, match="at least two layers"):
        eloss_terms(h, [["a"]])
    with pytest.raises(ElossError, match="direction"):
        eloss_terms(h, groups, direction="up")


def repeated_net() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()]
    for _ in range(4):
        layers += [nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def test_gradient_step_on_variance_term_lowers_it():
    model = repeated_net()
    names = ["1", "3", "5", "7", "9"]
    cfg = ProbeConfig(max_samples=None, max_dim=None)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    with EntropyProbe(model, names, cfg) as probe:
        model(x)
        before = eloss_terms(probe.entropies, [names])["eloss_var"]
        grads = torch.autograd.grad(before, list(model.parameters()))
        with torch.no_grad():
            step = 1e-4 / max(float(g.norm()) for g in grads)
            for p, g in zip(model.parameters(), grads):
                p -= step * g
        model(x)
        after = eloss_terms(probe.entropies, [names])["eloss_var"]
    assert float(after.detach()) < float(before.detach())


def test_zero_weight_adds_exactly_zero_gradient():
    model = repeated_net()
    names = ["1", "3", "5"]
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with EntropyProbe(model, names, ProbeConfig()) as probe:
        out = model(x)
        terms = eloss_terms(probe.entropies, [names])
        eloss = 0.0 * terms["eloss_var"] + 0.0 * terms["eloss_dir"]
        with_eloss = torch.autograd.grad(out.square().mean() + eloss, list(model.parameters()))
    out = model(x)
    baseline = torch.autograd.grad(out.square().mean(), list(model.parameters()))
    for a, b in zip(with_eloss, baseline):
        assert torch.equal(a, b)
