"""The VNN testbed: the KL metric against numerical integration, the exact posterior against an independent
function-space computation, and the tiny benchmark's behaviour (not the published numbers)."""
import dataclasses
import math

import pytest
import torch
from scipy import integrate, stats

from glassbox.vnn_eval import (AGENT_NAMES, FITS, TINY, RandomMLPPrior, SweepConfig, evaluate, gaussian_kl,
                               make_problems, posterior_samples, run_testbed, summarise)


def seed_eq71(mu_p, sd_p, mu_gt, sd_gt):
    """The seed's Eq. (71) as printed, for KL(P || GT)."""
    return math.log(sd_p / sd_gt) + (sd_p ** 2 + (mu_p - mu_gt) ** 2) / (2 * sd_gt ** 2) - 0.5


@pytest.mark.parametrize("mu_p,sd_p,mu_q,sd_q", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 2.0), (1.0, 2.0, 0.0, 0.3)])
def test_gaussian_kl_matches_numerical_integration(mu_p, sd_p, mu_q, sd_q):
    p, q = stats.norm(mu_p, sd_p), stats.norm(mu_q, sd_q)
    truth, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), mu_p - 12 * sd_p, mu_p + 12 * sd_p)
    ours = float(gaussian_kl(*(torch.tensor(v, dtype=torch.float64) for v in (mu_p, sd_p, mu_q, sd_q))))
    assert ours == pytest.approx(truth, abs=1e-9)


def test_seed_formula_is_wrong_and_ours_is_zero_only_at_equality():
    # the printed Eq. (71) goes negative, which no KL does: a narrower P than GT at the same mean
    assert seed_eq71(0.0, 0.1, 0.0, 1.0) < 0
    kl = float(gaussian_kl(torch.tensor(0.0), torch.tensor(0.1), torch.tensor(0.0), torch.tensor(1.0)))
    assert kl > 0 and kl != pytest.approx(seed_eq71(0.0, 0.1, 0.0, 1.0))
    x = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = x.abs() + 0.1
    assert torch.equal(gaussian_kl(x, s, x, s), torch.zeros_like(x))
    assert torch.all(gaussian_kl(x, s, x.flip(0), s.flip(0)) >= 0)


def test_posterior_matches_function_space_gp():
    cfg = dataclasses.replace(TINY, prior_width=64, num_test=50)
    d, ratio, seed = 5, 4, 3
    problems = make_problems(d, ratio, (0.05, 0.5), seed, cfg)
    prior = RandomMLPPrior(d, cfg.prior_width, seed)
    psi, psi_t = prior.features(problems[0].x_train).double(), prior.features(problems[0].x_test).double()
    for p in problems:
        k = psi @ psi.T + p.noise_std ** 2 * torch.eye(psi.shape[0], dtype=torch.float64)
        cross = psi_t @ psi.T                                                  # (test, train) prior covariance
        mean = cross @ torch.linalg.solve(k, p.y_train[:, 0].double())
        var = (psi_t * psi_t).sum(1) - (cross * torch.linalg.solve(k, cross.T).T).sum(1)
        torch.testing.assert_close(p.mean, mean, rtol=1e-4, atol=1e-5)       # y is stored in float32
        torch.testing.assert_close(p.std, var.clamp_min(0).sqrt(), rtol=1e-4, atol=1e-6)
    # less noise or more data -> a tighter posterior; every posterior is tighter than the prior
    assert float(problems[0].std.mean()) < float(problems[1].std.mean())
    assert torch.all(problems[1].std < psi_t.norm(dim=1))
    more = make_problems(d, 10 * ratio, (0.5,), seed, cfg)[0]
    assert float(more.std.mean()) < float(problems[1].std.mean())


def test_oracle_has_zero_kl_and_overconfidence_is_penalised():
    p = make_problems(10, 10, (0.1,), 0, TINY)[0]
    assert evaluate(p, posterior_samples(p, 4000), TINY.std_ridge)["kl"] < 0.005
    z = torch.randn(4000, p.mean.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    overconfident = evaluate(p, p.mean + p.std / 4 * z, 0.0)
    assert overconfident["kl"] > 1.0 and overconfident["kl"] > overconfident["kl_reverse"]


@pytest.fixture(scope="module")
def tiny_rows():
    torch.set_num_threads(1)
    return run_testbed(TINY)


def test_tiny_run_every_agent_finite_and_non_negative(tiny_rows):
    assert {r["agent"] for r in tiny_rows} == set(AGENT_NAMES) and len(tiny_rows) == 2 * len(AGENT_NAMES)
    for r in tiny_rows:
        for key in ("kl", "kl_reverse", "mse_mean", "agent_std"):
            assert math.isfinite(r[key]) and r[key] >= 0, r
    summary = summarise(tiny_rows)
    n = len(AGENT_NAMES)
    assert sum(a["mean_rank"] for a in summary["agents"].values()) == pytest.approx(n * (n + 1) / 2)
    assert sum(a["settings_won"] for a in summary["agents"].values()) == len(summary["settings"]) == 2
    assert summary["wins"]["vnn"]["bbb"] + summary["wins"]["bbb"]["vnn"] == summary["cases"] == 2


@pytest.mark.parametrize("agent", AGENT_NAMES)
def test_more_data_lowers_kl_on_the_same_problem(agent):
    """One problem and seed, one truth (the posterior given all 1000 points): trained on 10 of them or on all."""
    torch.set_num_threads(1)
    p = make_problems(10, 100, (0.1,), 0, TINY)[0]
    few = dataclasses.replace(p, x_train=p.x_train[:10], y_train=p.y_train[:10])
    kls = []
    for data in (few, p):
        sampler = FITS[agent](data, TINY, 0)
        with torch.no_grad():
            kls.append(evaluate(p, sampler(p.x_test, TINY.eval_samples), TINY.std_ridge)["kl"])
    assert kls[1] < kls[0], kls


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown agents"):
        SweepConfig(agents=("vnn", "gp"))
    with pytest.raises(ValueError, match="> 0"):
        SweepConfig(noise_stds=(0.0,))
    with pytest.raises(ValueError, match="steps"):
        SweepConfig(steps=0)
