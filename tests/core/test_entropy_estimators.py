"""Entropy estimators against closed-form entropies, an independent KD-tree implementation, and exact rules."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln

from glassbox.entropy import (EntropyError, channel_entropy, gaussian_entropy, knn_entropy,
                              log_unit_ball_volume)

LOG_2PIE = math.log(2 * math.pi * math.e)


def reference_knn_entropy(x: np.ndarray, k: int) -> float:
    """Kozachenko-Leonenko Eq. (4) with scipy's KD-tree, float64, written independently of the library."""
    n, d = x.shape
    dist, _ = cKDTree(x).query(x, k=k + 1)            # column 0 is the point itself (distinct data)
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1)
    return float(-digamma(k) + digamma(n) + log_vd + d * np.mean(np.log(dist[:, k])))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ar1_cov(d: int, rho: float = 0.7) -> torch.Tensor:
    i = torch.arange(d, dtype=torch.float64)
    scale = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    return rho ** (i[:, None] - i[None, :]).abs() * scale[:, None] * scale[None, :]


def gaussian_truth(cov: torch.Tensor) -> float:
    return 0.5 * (cov.shape[0] * LOG_2PIE + float(torch.logdet(cov)))


@pytest.mark.parametrize("n,d", [(2048, 64), (2048, 3), (300, 17), (64, 1)])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_matches_kdtree_reference(n, d, k):
    x = np.random.default_rng(n + d + k).standard_normal((n, d)) * np.linspace(0.2, 3.0, d)
    ours = float(knn_entropy(torch.from_numpy(x), k=k))
    ref = reference_knn_entropy(x, k)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_knn_batched_and_chunked_equal_single():
    x = torch.randn(3, 200, 5, dtype=torch.float64, generator=gen(0))
    batched = knn_entropy(x, k=2)
    single = torch.stack([knn_entropy(x[i], k=2) for i in range(3)])
    chunked = knn_entropy(x, k=2, max_chunk_elements=4200)      # 7 rows per chunk
    assert batched.shape == (3,)
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked, single, rtol=1e-12, atol=1e-12)


def test_eq3_minus_eq4_is_exact_constant():
    n = 500
    x = torch.randn(n, 4, dtype=torch.float64, generator=gen(1))
    diff = float(knn_entropy(x, variant="eq3") - knn_entropy(x, k=1, variant="eq4"))
    assert diff == pytest.approx(math.log(n - 1) - float(digamma(n)), abs=1e-12)
    assert -1.0 / (n - 1) < diff < 0.0


@pytest.mark.parametrize("d", [1, 2, 5, 10])
def test_knn_isotropic_gaussian_close_to_truth(d):
    s = 1.7
    x = s * torch.randn(4000, d, dtype=torch.float64, generator=gen(d))
    truth = 0.5 * d * math.log(2 * math.pi * math.e * s * s)
    tol = {1: 0.06, 2: 0.06, 5: 0.1, 10: 0.15}[d]
    assert float(knn_entropy(x)) == pytest.approx(truth, abs=tol)


@pytest.mark.parametrize("d", [2, 5, 10])
def test_knn_correlated_gaussian_bias_within_known_range_and_shrinks(d):
    cov = ar1_cov(d)
    chol = torch.linalg.cholesky(cov)
    truth = gaussian_truth(cov)

    def rms_error(n: int) -> float:
        errs = [float(knn_entropy(torch.randn(n, d, dtype=torch.float64, generator=gen(s)) @ chol.T)) - truth
                for s in range(4)]
        return math.sqrt(float(np.mean(np.square(errs))))

    small, large = rms_error(250), rms_error(4000)
    # kNN bias grows with d and with anisotropy: ~0.05 nats at d <= 5, ~0.4 at d = 10 for n = 4000.
    assert large < {2: 0.06, 5: 0.08, 10: 0.5}[d]
    assert large < small


def test_knn_uniform_box_and_exponential():
    a = torch.tensor([0.5, 2.0], dtype=torch.float64)
    lam = torch.tensor([0.5, 4.0], dtype=torch.float64)
    for n, tol in ((4000, 0.06),):
        u = torch.rand(n, 2, dtype=torch.float64, generator=gen(3)) * a
        assert float(knn_entropy(u)) == pytest.approx(float(torch.log(a).sum()), abs=tol)
        e = torch.empty(n, 2, dtype=torch.float64).exponential_(1.0, generator=gen(4)) / lam
        assert float(knn_entropy(e)) == pytest.approx(2.0 - float(torch.log(lam).sum()), abs=tol)
    x1 = torch.rand(n, 1, dtype=torch.float64, generator=gen(5)) * 3.0
    assert float(knn_entropy(x1, k=3)) == pytest.approx(math.log(3.0), abs=0.03)


@pytest.mark.parametrize("k", [1, 4])
def test_knn_affine_rule_exact(k):
    x = torch.randn(700, 6, dtype=torch.float64, generator=gen(6))
    h = float(knn_entropy(x, k=k))
    shift = torch.randn(6, dtype=torch.float64, generator=gen(7)) * 50.0
    for a in (3.5, -0.25, 1e-3):
        assert float(knn_entropy(a * x + shift, k=k)) == pytest.approx(h + 6 * math.log(abs(a)), rel=1e-9)
    perm = torch.randperm(700, generator=gen(8))
    assert float(knn_entropy(x[perm], k=k)) == pytest.approx(h, rel=1e-12)


def test_knn_float32_scale_rule_to_float_tolerance():
    x = torch.randn(1000, 8, generator=gen(9))
    h = float(knn_entropy(x))
    assert float(knn_entropy(4.0 * x + 100.0)) == pytest.approx(h + 8 * math.log(4.0), rel=1e-4)


def test_knn_duplicates_are_finite_with_finite_gradient():
    x = torch.randn(50, 4, dtype=torch.float64, generator=gen(10))
    x[10:13] = 0.0                                   # three dead (identical) rows
    x[20] = x[21]
    x.requires_grad_(True)
    h = knn_entropy(x, k=1)
    h.backward()
    assert torch.isfinite(h)
    assert torch.isfinite(x.grad).all()
    # the clamp floors each duplicated pair at eps: the estimate is far below the distinct-sample value
    assert float(h.detach()) < float(knn_entropy(torch.randn(50, 4, dtype=torch.float64, generator=gen(11))))


def test_knn_gradcheck():
    x = torch.randn(7, 3, dtype=torch.float64, generator=gen(12), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: knn_entropy(t, k=2), (x,))
    xb = torch.randn(2, 6, 2, dtype=torch.float64, generator=gen(13), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: knn_entropy(t, k=1, variant="eq3"), (xb,))


def test_log_unit_ball_volume():
    assert log_unit_ball_volume(1) == pytest.approx(math.log(2.0))
    assert log_unit_ball_volume(2) == pytest.approx(math.log(math.pi))
    assert log_unit_ball_volume(3) == pytest.approx(math.log(4.0 * math.pi / 3.0))
    big = log_unit_ball_volume(1_000_000)
    assert math.isfinite(big) and big < -1e6
    with pytest.raises(EntropyError):
        log_unit_ball_volume(0)


def test_half_precision_and_integer_inputs_are_estimated_in_float32():
    x = torch.randn(300, 4, generator=gen(14))
    for low in (x.half(), x.bfloat16()):
        h = knn_entropy(low)
        assert h.dtype == torch.float32
        assert float(h) == pytest.approx(float(knn_entropy(low.float())), rel=1e-6)
    xi = (x * 100).round().to(torch.int32)
    assert float(channel_entropy(xi)) == pytest.approx(float(channel_entropy(xi.float())), rel=1e-6)


def test_knn_rejects_bad_input():
    with pytest.raises(EntropyError):
        knn_entropy(torch.randn(3, 2), k=3)          # k must be < n
    with pytest.raises(EntropyError):
        knn_entropy(torch.randn(5))
    with pytest.raises(EntropyError):
        knn_entropy(torch.randn(10, 2), k=2, variant="eq3")
    with pytest.raises(EntropyError):
        knn_entropy(np.zeros((4, 2)))


@pytest.mark.parametrize("d", [1, 5, 10])
def test_gaussian_estimator_on_correlated_gaussians(d):
    cov = ar1_cov(d)
    x = torch.randn(8000, d, dtype=torch.float64, generator=gen(20 + d)) @ torch.linalg.cholesky(cov).T
    assert float(gaussian_entropy(x)) == pytest.approx(gaussian_truth(cov), abs=0.03)


def test_gaussian_estimator_matches_explicit_shrunk_logdet_both_paths():
    for n, d in ((40, 7), (12, 30)):                  # d <= n (Cholesky of d x d) and d > n (Gram matrix)
        x = torch.randn(n, d, dtype=torch.float64, generator=gen(n)) * 2.0 + 1.0
        s = 0.3
        xc = (x - x.mean(0)).numpy()
        c = xc.T @ xc / n
        shrunk = (1 - s) * c + s * np.trace(c) / d * np.eye(d) + 1e-12 * np.eye(d)
        expect = 0.5 * (d * LOG_2PIE + np.linalg.slogdet(shrunk)[1])
        assert float(gaussian_entropy(x, shrinkage=s)) == pytest.approx(expect, rel=1e-10)


def test_ledoit_wolf_shrinkage_matches_textbook_formula():
    n, d = 30, 10
    x = torch.randn(n, d, dtype=torch.float64, generator=gen(31)) @ torch.linalg.cholesky(ar1_cov(d, 0.9)).T
    xc = (x - x.mean(0)).numpy()
    c = xc.T @ xc / n
    mu = np.trace(c) / d
    delta2 = np.sum((c - mu * np.eye(d)) ** 2)
    beta2 = min(delta2, sum(np.sum((np.outer(v, v) - c) ** 2) for v in xc) / n**2)
    s = beta2 / delta2
    shrunk = (1 - s) * c + s * mu * np.eye(d) + 1e-12 * np.eye(d)
    expect = 0.5 * (d * LOG_2PIE + np.linalg.slogdet(shrunk)[1])
    assert float(gaussian_entropy(x)) == pytest.approx(expect, rel=1e-10)


def test_channel_estimator_exact_for_independent_and_upper_bound_for_correlated():
    sd = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    x = torch.randn(20000, 3, dtype=torch.float64, generator=gen(40)) * sd
    truth = float(0.5 * (LOG_2PIE + torch.log(sd**2)).sum())
    assert float(channel_entropy(x)) == pytest.approx(truth, abs=0.02)
    cov = ar1_cov(5, 0.8)
    y = torch.randn(5000, 5, dtype=torch.float64, generator=gen(41)) @ torch.linalg.cholesky(cov).T
    assert float(channel_entropy(y)) > float(gaussian_entropy(y, shrinkage=0.0)) + 1.0


def test_gaussian_and_channel_gradcheck_and_batching():
    x = torch.randn(2, 9, 4, dtype=torch.float64, generator=gen(50), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_entropy(t, shrinkage=0.1), (x,))
    assert torch.autograd.gradcheck(lambda t: gaussian_entropy(t, shrinkage=0.2), (x[:, :3].detach()
                                                                                   .requires_grad_(),))
    assert torch.autograd.gradcheck(channel_entropy, (x,))
    for fn in (gaussian_entropy, channel_entropy):
        batched = fn(x.detach())
        assert batched.shape == (2,)
        torch.testing.assert_close(batched, torch.stack([fn(x[i].detach()) for i in range(2)]))


def test_estimators_shift_and_scale_rules():
    x = torch.randn(300, 4, dtype=torch.float64, generator=gen(60))
    for fn in (gaussian_entropy, channel_entropy):
        h = float(fn(x))
        assert float(fn(2.5 * x - 7.0)) == pytest.approx(h + 4 * math.log(2.5), rel=1e-9)


@pytest.mark.gpu
def test_estimators_cuda_match_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = torch.randn(4, 256, 32, dtype=torch.float64, generator=gen(70))
    for fn in (knn_entropy, gaussian_entropy, channel_entropy):
        torch.testing.assert_close(fn(x.cuda()).cpu(), fn(x), rtol=1e-9, atol=1e-9)
