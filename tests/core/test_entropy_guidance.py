"""Closed-form entropy changes of dense and conv layers, and the entropy-guidance penalty."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from glassbox.entropy import (GuidanceError, conv_entropy_change, conv_entropy_statistics,
                              dense_entropy_change, guidance_penalty)


def gaussian_entropy_closed(cov: np.ndarray) -> float:
    return 0.5 * (cov.shape[0] * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1])


def test_dense_square_matches_gaussian_entropy_change():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 6)) * 0.3
    a = rng.standard_normal((6, 6))
    cov = a @ a.T + np.eye(6)
    change = gaussian_entropy_closed(w @ cov @ w.T) - gaussian_entropy_closed(cov)
    assert float(dense_entropy_change(torch.from_numpy(w))) == pytest.approx(change, rel=1e-10)


@pytest.mark.parametrize("m,n", [(3, 7), (7, 3)])
def test_dense_augmented_constructions(m, n):
    rng = np.random.default_rng(m)
    w = rng.standard_normal((m, n))
    k = min(m, n)
    size = max(m, n)
    aug = np.zeros((size, size))
    if m < n:                                  # [[W_s, W_r], [0, I]]: output plus passed-through inputs
        aug[:m, :] = w
        aug[m:, m:] = np.eye(n - m)
    else:                                      # [[W_s, 0], [W_r, I]]: padded input
        aug[:, :n] = w
        aug[n:, n:] = np.eye(m - n)
    cov = np.diag(rng.uniform(0.5, 2.0, size))
    change = gaussian_entropy_closed(aug @ cov @ aug.T) - gaussian_entropy_closed(cov)
    ours = float(dense_entropy_change(torch.from_numpy(w)))
    assert ours == pytest.approx(np.linalg.slogdet(w[:k, :k])[1], rel=1e-12)
    assert ours == pytest.approx(change, rel=1e-9)
    assert float(dense_entropy_change(torch.from_numpy(w.T.copy()))) == pytest.approx(ours, rel=1e-12)


def test_dense_no_underflow_for_wide_glorot_layer():
    layer = nn.Linear(784, 260)
    torch.manual_seed(0)
    nn.init.xavier_uniform_(layer.weight)
    assert float(torch.det(layer.weight.detach()[:260, :260])) == 0.0          # det itself underflows in float32
    value = float(dense_entropy_change(layer.weight.detach()))
    assert math.isfinite(value) and value < -100.0


def toeplitz_conv_matrix(c: np.ndarray, l: int, w: int) -> np.ndarray:
    """M with M @ vec(X) = valid cross-correlation of the l x w image X with filter c (row-major vec)."""
    p, q = c.shape
    rows = []
    for i in range(l - p + 1):
        for j in range(w - q + 1):
            r = np.zeros((l, w))
            r[i:i + p, j:j + q] = c
            rows.append(r.ravel())
    return np.array(rows)


def squared_conv_matrix(c: np.ndarray, l: int, w: int) -> np.ndarray:
    """Square completion: pixels that start no window pass through (identity rows), in pixel order."""
    p, q = c.shape
    out = np.zeros((l * w, l * w))
    conv = toeplitz_conv_matrix(c, l, w)
    row = 0
    for i in range(l):
        for j in range(w):
            if i <= l - p and j <= w - q:
                out[i * w + j] = conv[row]
                row += 1
            else:
                out[i * w + j, i * w + j] = 1.0
    return out


@pytest.mark.parametrize("l,w,p,q", [(3, 4, 2, 2), (4, 5, 3, 3), (6, 7, 3, 2)])
def test_conv_rule_against_block_toeplitz(l, w, p, q):
    rng = np.random.default_rng(l * w)
    c = rng.standard_normal((p, q))
    x = rng.standard_normal((l, w))
    m = toeplitz_conv_matrix(c, l, w)
    y = nn.functional.conv2d(torch.from_numpy(x)[None, None], torch.from_numpy(c)[None, None])
    np.testing.assert_allclose(m @ x.ravel(), y.numpy().ravel(), rtol=1e-12)
    logdet = np.linalg.slogdet(squared_conv_matrix(c, l, w))[1]
    weight = torch.from_numpy(c)[None, None]
    ours = float(conv_entropy_change(weight, in_hw=(l, w))[0, 0])
    assert ours == pytest.approx(logdet, rel=1e-9)
    assert ours == pytest.approx((l - p + 1) * (w - q + 1) * math.log(abs(c[0, 0])), rel=1e-12)


def test_gradients_of_closed_forms():
    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    dense_entropy_change(w).backward()
    expect = torch.zeros(4, 6, dtype=torch.float64)
    expect[:, :4] = torch.linalg.inv(w.detach()[:, :4]).T
    torch.testing.assert_close(w.grad, expect)
    conv = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    conv_entropy_change(conv).sum().backward()
    g = conv.grad
    torch.testing.assert_close(g[:, :, 0, 0], 1.0 / conv.detach()[:, :, 0, 0])
    g[:, :, 0, 0] = 0.0
    assert float(g.abs().sum()) == 0.0                        # every other tap gets no gradient


def test_surrogate_is_bounded_with_finite_gradient_at_zero():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    log_abs = torch.log(x.abs().clamp_min(1e-300))
    value = guidance_penalty(log_abs, "reciprocal", a=0.1).sum()
    value.backward()
    assert float(value.detach()) == pytest.approx(30.0)
    assert torch.isfinite(x.grad).all()
    xs = torch.tensor([0.01, 0.5, 2.0], dtype=torch.float64)
    rec = guidance_penalty(torch.log(xs), "reciprocal", a=0.01)
    assert (rec[1:] < rec[:-1]).all()                        # decreasing in |x|, like -log|x|
    assert float(guidance_penalty(torch.tensor(-100.0), "log", log_floor=-30.0)) == 30.0
    with pytest.raises(GuidanceError):
        guidance_penalty(xs, "exp")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(16, 8)


def test_conv_entropy_statistics():
    net = Net()
    stats = conv_entropy_statistics(net)
    v = np.log(np.abs(net.conv.weight.detach().numpy()[:, :, 0, 0])).ravel()
    assert list(stats) == ["conv"]
    assert stats["conv"][0] == pytest.approx(v.mean(), rel=1e-6)
    assert stats["conv"][1] == pytest.approx(v.std(), rel=1e-5)
