"""Variational layers against their closed-form moments, exact reductions and the index rules."""
import pytest
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glassbox.vnn import (NoiseIndex, Predictive, VariationalLayer, VariationalSequential, predictive,
                          variational_conv2d, variational_linear)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_single_linear_layer_moments_match_closed_form():
    torch.manual_seed(0)
    layer = variational_linear(5, 3).double()
    x = torch.randn(5, dtype=torch.float64, generator=gen(1))
    with torch.no_grad():
        mean_truth = layer.mean.weight @ x + layer.mean.bias
        std_truth = (layer.std.weight @ x + layer.std.bias).abs()
        t = 200_000
        draws = layer(x.expand(t, 5))                                    # fresh eps per draw
    mean, var = draws.mean(0), draws.var(0)
    # sampling error: std/sqrt(T) for the mean, sqrt(2/T) * var for the variance; 5 standard errors
    assert torch.all((mean - mean_truth).abs() < 5 * std_truth / t ** 0.5)
    assert torch.all((var - std_truth ** 2).abs() < 5 * (2 / t) ** 0.5 * std_truth ** 2)
    assert torch.all(std_truth > 1e-3)                                   # the check is not trivially met


def test_predictive_api_moments_converge_and_t1_has_zero_variance():
    torch.manual_seed(2)
    net = VariationalSequential(variational_linear(4, 2)).double()
    x = torch.randn(6, 4, dtype=torch.float64, generator=gen(3))
    with torch.no_grad():
        p = predictive(net, x, samples=100_000, seed=7)
        layer = net[0]
        mean_truth, sd_truth = layer.moments(x)
        assert p.samples.shape == (100_000, 6, 2)
        torch.testing.assert_close(p.mean, mean_truth, atol=float(5 * sd_truth.abs().max() / 100_000 ** 0.5),
                                   rtol=0)
        torch.testing.assert_close(p.var, sd_truth ** 2, rtol=0.03, atol=0)
        assert torch.count_nonzero(predictive(net, x, samples=1, seed=7).var) == 0


def test_fixed_index_is_deterministic_and_sample_t_does_not_depend_on_t():
    torch.manual_seed(4)
    net = VariationalSequential(variational_linear(3, 8, activation="leaky_relu"), variational_linear(8, 1))
    x = torch.randn(5, 3, generator=gen(5))
    with torch.no_grad():
        a, b = net(x, NoiseIndex(10, seed=11)), net(x, NoiseIndex(10, seed=11))
        longer = net(x, NoiseIndex(20, seed=11))
        other = net(x, NoiseIndex(10, seed=12))
        fresh1, fresh2 = net(x, NoiseIndex(10)), net(x, NoiseIndex(10))
    assert torch.equal(a, b)
    torch.testing.assert_close(a, longer[:10], rtol=1e-6, atol=1e-7)      # equal up to the matmul's blocking
    assert not torch.allclose(a, other) and not torch.allclose(fresh1, fresh2)
    # one index sample is one function: the same eps for every input, so a single input reproduces its row
    with torch.no_grad():
        alone = net(x[2:3], NoiseIndex(10, seed=11))
    torch.testing.assert_close(alone[:, 0], a[:, 2])


def test_given_noise_is_used_and_checked():
    torch.manual_seed(6)
    net = VariationalSequential(variational_linear(3, 4), nn.ReLU(), variational_linear(4, 2))
    x = torch.randn(7, 3, generator=gen(8))
    noise = [torch.randn(5, 4, generator=gen(9)), torch.randn(5, 2, generator=gen(10))]
    with torch.no_grad():
        out = net(x, NoiseIndex(5, noise=noise))
        h = torch.relu(net[0](x[None], noise[0][:, None]))              # (5, 7, 4) by hand
        by_hand = net[2](h, noise[1][:, None])
    torch.testing.assert_close(out, by_hand)
    with pytest.raises(ValueError, match="shape"):
        net(x, NoiseIndex(5, noise=[noise[0], torch.randn(5, 3)]))
    with pytest.raises(ValueError, match="rows"):
        NoiseIndex(5, noise=[torch.randn(4, 4)])


def test_zero_sigma_reduces_exactly_to_linear_and_conv2d():
    torch.manual_seed(12)
    lin = nn.Linear(6, 4)
    x = torch.randn(9, 6, generator=gen(13))
    const = variational_linear(6, 4, constant_std=0.0)
    zeroed = variational_linear(6, 4)
    for v in (const, zeroed):
        v.mean.load_state_dict(lin.state_dict())
    nn.init.zeros_(zeroed.std.weight), nn.init.zeros_(zeroed.std.bias)
    with torch.no_grad():
        assert torch.equal(const(x), lin(x)) and torch.equal(zeroed(x), lin(x))
        net = VariationalSequential(const)
        assert torch.equal(net(x, NoiseIndex(3, seed=1)), lin(x).expand(3, 9, 4))

    conv = nn.Conv2d(3, 5, 3, padding=1)
    img = torch.randn(2, 3, 8, 8, generator=gen(14))
    vconv = variational_conv2d(3, 5, 3, padding=1)
    vconv.mean.load_state_dict(conv.state_dict())
    nn.init.zeros_(vconv.std.weight), nn.init.zeros_(vconv.std.bias)
    with torch.no_grad():
        assert torch.equal(vconv(img), conv(img))
        assert vconv(img).shape == conv(img).shape == (2, 5, 8, 8)


def test_nonzero_sigma_is_stochastic_and_constant_std_is_aleatoric():
    torch.manual_seed(15)
    x = torch.randn(4, 3, generator=gen(16))
    layer = variational_linear(3, 2, constant_std=0.5)
    with torch.no_grad():
        assert not torch.equal(layer(x), layer(x))
        mu, sigma = layer.moments(x)
        assert torch.equal(sigma, torch.full_like(mu, 0.5))             # input-independent std
        draws = layer(x[:1].expand(100_000, 3))
    assert float(draws.std(0).sub(0.5).abs().max()) < 0.01


def test_activation_switches():
    torch.manual_seed(17)
    x = torch.randn(50, 3, generator=gen(18))
    pos = variational_linear(3, 4, std_activation="softplus")
    relu_end = variational_linear(3, 4, activation="relu")
    relu_mean = variational_linear(3, 4, mean_activation="relu", constant_std=0.0)
    with torch.no_grad():
        assert torch.all(pos.moments(x)[1] > 0)
        assert torch.all(relu_end(x) >= 0)
        torch.testing.assert_close(relu_mean(x), torch.relu(relu_mean.mean(x)))
    with pytest.raises(ValueError, match="unknown activation"):
        variational_linear(3, 4, activation="swish")
    with pytest.raises(ValueError, match="either"):
        VariationalLayer(nn.Linear(3, 4))
    with pytest.raises(TypeError, match="one type"):
        VariationalLayer(nn.Linear(3, 4), nn.Conv2d(3, 4, 1))
    with pytest.raises(ValueError, match=">= 0"):
        variational_linear(3, 4, constant_std=-1.0)


def test_gradients_reach_both_branches():
    torch.manual_seed(19)
    net = VariationalSequential(variational_linear(3, 5), nn.Tanh(), variational_linear(5, 1))
    x, y = torch.randn(8, 3, generator=gen(20)), torch.randn(8, 1, generator=gen(21))
    out = net(x, NoiseIndex(4))
    (out - y).square().mean().backward()
    for layer in (net[0], net[2]):
        for branch in (layer.mean, layer.std):
            assert float(branch.weight.grad.abs().sum()) > 0 and float(branch.bias.grad.abs().sum()) > 0


def test_predictive_covariance_shape_psd_and_diagonal():
    torch.manual_seed(22)
    net = VariationalSequential(variational_linear(4, 6), nn.ReLU(), variational_linear(6, 3))
    x = torch.randn(5, 4, generator=gen(23))
    with torch.no_grad():
        p = predictive(net, x, samples=64, seed=3)
    cov = p.covariance()
    assert cov.shape == (5, 3, 3)
    torch.testing.assert_close(cov, cov.transpose(1, 2))
    assert float(torch.linalg.eigvalsh(cov.double()).min()) > -1e-6
    torch.testing.assert_close(torch.diagonal(cov, dim1=1, dim2=2), p.var)
    conv_net = VariationalSequential(variational_conv2d(1, 2, 3, padding=1))
    with torch.no_grad():
        q = predictive(conv_net, torch.randn(2, 1, 4, 4, generator=gen(24)), samples=8)
    assert q.samples.shape == (8, 2, 2, 4, 4) and q.covariance().shape == (2, 32, 32)
    assert isinstance(q, Predictive) and q.var.shape == (2, 2, 4, 4)


# ------------------------------------------------------------------------------- sampled 1x1 conv output heads
def test_sampled_variational_head_moments_per_channel_noise_and_gradients():
    """Sample t of a variational head is mu + sigma * eps_t with one eps per output channel: its per-pixel mean
    and variance over many samples are the layer's moments, and every pixel of a sample shares eps."""
    from glassbox.vnn import SampledConvHead

    torch.manual_seed(0)
    head = SampledConvHead(5, 3, "variational", init_std=0.3)
    nn.init.normal_(head.layer.std.weight, std=0.2)
    x = torch.randn(2, 5, 4, 6)
    noise = head.draw(20000, torch.Generator().manual_seed(1))
    assert noise.shape == (20000, 3)
    out = head(x, noise)                                                  # (T, B, C, H, W)
    mu, sigma = head.layer.moments(x)
    torch.testing.assert_close(out.mean(0), mu, atol=0.03, rtol=0)
    torch.testing.assert_close(out.var(0), sigma.square(), atol=0.03, rtol=0.05)
    z = (out[:3] - mu) / sigma                                            # recovers eps, equal over pixels
    torch.testing.assert_close(z, noise[:3, None, :, None, None].expand_as(z), atol=1e-4, rtol=1e-4)
    out[:4].sum().backward()
    assert head.layer.mean.weight.grad.abs().sum() > 0 and head.layer.std.weight.grad.abs().sum() > 0


def test_sampled_dropout_head_is_unbiased_and_masks_whole_input_channels():
    from glassbox.vnn import SampledConvHead

    torch.manual_seed(0)
    head = SampledConvHead(8, 2, "mc_dropout", dropout=0.25)
    x = torch.randn(1, 8, 3, 3)
    masks = head.draw(40000, torch.Generator().manual_seed(2))
    torch.testing.assert_close(masks.unique(), torch.tensor([0.0, 1.0 / 0.75]))
    out = head(x, masks)
    torch.testing.assert_close(out.mean(0), head.conv(x), atol=0.03, rtol=0)
    one = torch.zeros(1, 8)
    one[0, 3] = 1.0                                                       # only input channel 3 kept
    expected = nn.functional.conv2d(x[:, 3:4], head.conv.weight[:, 3:4], head.conv.bias)
    torch.testing.assert_close(head(x, one)[0], expected)


def test_uncertainty_splits_are_the_closed_forms():
    """Bernoulli: H(mean p) = E H(p_t) + MI, MI = 0 when the samples agree and log 2 for p in {0, 1} halves;
    Gaussian: the law of total variance; mixture NLL of one sample = the Gaussian NLL."""
    import math

    from glassbox.vnn import bernoulli_split, binary_entropy, gaussian_split, mixture_gaussian_nll

    same = torch.full((4, 3), 0.3)
    mean, ale, epi = bernoulli_split(same)
    torch.testing.assert_close(ale, binary_entropy(torch.full((3,), 0.3)))
    torch.testing.assert_close(epi, torch.zeros(3), atol=1e-6, rtol=0)
    split = torch.tensor([[1e-9], [1 - 1e-9]]).repeat(2, 1)
    mean, ale, epi = bernoulli_split(split)
    assert abs(float(epi[0]) - math.log(2)) < 1e-4 and float(ale[0]) < 1e-4
    means, log_vars = torch.tensor([[0.0], [2.0]]), torch.log(torch.tensor([[1.0], [3.0]]))
    m, v_ale, v_epi = gaussian_split(means, log_vars)
    assert (float(m), float(v_ale), float(v_epi)) == pytest.approx((1.0, 2.0, 1.0))
    y = torch.tensor([0.7])
    nll = mixture_gaussian_nll(y, torch.tensor([[0.2]]), torch.log(torch.tensor([[0.5]])))
    closed = 0.5 * (0.5 ** 2 / 0.5 + math.log(0.5) + math.log(2 * math.pi))
    assert float(nll) == pytest.approx(closed, abs=1e-6)
    two = mixture_gaussian_nll(y, torch.tensor([[0.2], [1.2]]), torch.zeros(2, 1))
    direct = -math.log(0.5 * sum(math.exp(-0.5 * d * d) / math.sqrt(2 * math.pi) for d in (0.5, -0.5)))
    assert float(two) == pytest.approx(direct, abs=1e-6)


def test_predictive_logit_is_the_logit_of_the_mean_probability_far_into_the_tails():
    from glassbox.vnn import predictive_logit
    z = torch.linspace(-28, 28, 561).repeat(8, 1) + torch.rand(8, 561, generator=torch.Generator().manual_seed(0))
    p, q = torch.sigmoid(z.double()).mean(0), torch.sigmoid(-z.double()).mean(0)    # q = 1 - p, no cancellation
    want = torch.log(p) - torch.log(q)                                       # float64 reference
    got = predictive_logit(z)                                                # float32
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=0)


def test_probit_logit_is_the_gaussian_predictive_within_its_known_error():
    """Against the expectation of the sigmoid under N(mu, sigma^2) by 80-point Gauss-Hermite quadrature: exact at
    sigma = 0, within 0.016 in probability everywhere (MacKay's bound), and closer to the expectation than the
    mean of 8 fixed samples where sigma is large."""
    from glassbox.vnn import probit_logit
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    mu, sigma = np.meshgrid(np.linspace(-10, 10, 81), np.linspace(0, 10, 41))
    exact = (w / (1 + np.exp(-(mu[..., None] + sigma[..., None] * x)))).sum(-1)
    got = torch.sigmoid(probit_logit(torch.tensor(mu), torch.tensor(sigma))).numpy()
    assert np.abs(got - exact).max() < 0.016
    np.testing.assert_allclose(got[0], 1 / (1 + np.exp(-mu[0])), atol=1e-12)           # sigma = 0: the sigmoid
    eps = torch.randn(8, 1, 1, generator=torch.Generator().manual_seed(0)).double()
    sampled = torch.sigmoid(torch.tensor(mu) + torch.tensor(sigma) * eps).mean(0).numpy()
    wide = sigma >= 3
    assert np.abs(got - exact)[wide].mean() < np.abs(sampled - exact)[wide].mean()


def test_softplus_matches_torch():
    from glassbox.vnn import Softplus
    x = torch.linspace(-40, 40, 8001)
    torch.testing.assert_close(Softplus()(x), F.softplus(x), atol=1e-6, rtol=1e-6)
