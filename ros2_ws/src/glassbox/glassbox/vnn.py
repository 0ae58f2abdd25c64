"""Variational Neural Network (VNN) layers: a layer whose output is a Gaussian sample (OpenDR D4.2, Sec. 2.7).

A variational layer holds two layers of the same type with their own parameters, ``L_mu`` for the mean and
``L_sigma`` for the standard deviation, and returns one sample of its output distribution (Eqs. 62-63)::

    VL(x) = a_N( a_mu(L_mu(x)) + a_sigma(L_sigma(x)) * eps ),   eps ~ N(0, I) of the output's shape

``a_mu``, ``a_sigma`` and ``a_N`` are each the identity or an activation (``ACTIVATIONS``). With the identity
on the std branch the "std" may be negative; only its square enters the variance, since ``eps`` is symmetric.
The constant-sigma (aleatoric) mode replaces ``L_sigma`` by a fixed scalar sigma (Eq. 66, with the variance
sigma^2 that the printed N(0, sigma I) means). sigma = 0 gives back the wrapped layer exactly.

*The index.* The network's prediction is the mean of ``T`` samples and its uncertainty their spread (Eq. 70).
A ``NoiseIndex`` names the noise of ``T`` network samples: sample ``t`` uses one ``eps`` per output unit of every
variational layer, shared by all inputs, so each sample is one function ``F(x, z_t)`` (the epistemic index of
the ENN framework). Given a seed, ``eps`` of sample ``t`` depends only on (seed, layer, t): the network is then a
deterministic function of its input. ``VariationalSequential`` evaluates the ``T`` samples as one batch: layers
before the first variational layer run once on the ``B`` inputs, the rest on ``T * B`` rows.

What differs from the seed: noise is added in output space (Eqs. 62 and 64) and that is the definition here;
the seed's Eq. 65 calls this "identical" to a Gaussian-weight network (Bayes by Backprop), which holds only
loosely (per-output noise of std |W_sigma x + b_sigma| is not per-weight noise). The seed gives no training
loss; ``glassbox.vnn_eval`` trains the benchmark's VNNs with the L2 loss over index samples with bootstrap
weights that the seed's authors used in the ENN testbed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

class Softplus(nn.Module):
    """``log(1 + e^x)`` as ``relu(x) + log1p(e^-|x|)``: torch's softplus to 1e-7, exported as Exp/Log/Relu, which
    ONNX Runtime runs several times faster than its Softplus op."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x) + torch.log1p(torch.exp(-x.abs()))


ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh,
               "softplus": Softplus}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class VariationalLayer(nn.Module):
    """``a_N(a_mu(mean(x)) + a_sigma(std(x)) * eps)``; ``std=None`` with ``constant_std`` is the aleatoric mode."""

    def __init__(self, mean: nn.Module, std: nn.Module | None = None, *, mean_activation: str = "identity",
                 std_activation: str = "identity", activation: str = "identity",
                 constant_std: float | None = None):
        super().__init__()
        if (std is None) == (constant_std is None):
            raise ValueError("give either a std layer or constant_std, not both or neither")
        if std is not None and type(std) is not type(mean):
            raise TypeError(f"mean and std layers must be of one type, got {type(mean).__name__} and "
                            f"{type(std).__name__}")
        if constant_std is not None and not constant_std >= 0:
            raise ValueError(f"constant_std must be >= 0, got {constant_std}")
        self.mean, self.std = mean, std
        self.mean_activation = make_activation(mean_activation)
        self.std_activation = make_activation(std_activation)
        self.activation = make_activation(activation)
        self.constant_std = constant_std

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and (signed) std of the pre-activation Gaussian, each of the wrapped layer's output shape."""
        mu = self.mean_activation(self.mean(x))
        if self.std is None:
            return mu, torch.full_like(mu, self.constant_std)
        return mu, self.std_activation(self.std(x))

    def combine(self, mu: Tensor, sigma: Tensor, eps: Tensor) -> Tensor:
        return self.activation(mu + sigma * eps)

    def forward(self, x: Tensor, eps: Tensor | None = None) -> Tensor:
        """One sample; fresh ``eps`` for every output element unless given (broadcast against the output)."""
        mu, sigma = self.moments(x)
        return self.combine(mu, sigma, torch.randn_like(mu) if eps is None else eps)


def variational_linear(in_features: int, out_features: int, **kwargs) -> VariationalLayer:
    """A variational ``nn.Linear``: two independently initialised linear layers; kwargs as ``VariationalLayer``."""
    std = None if kwargs.get("constant_std") is not None else nn.Linear(in_features, out_features)
    return VariationalLayer(nn.Linear(in_features, out_features), std, **kwargs)


def variational_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                       **kwargs) -> VariationalLayer:
    """A variational ``nn.Conv2d`` (same geometry for both branches); kwargs as ``VariationalLayer``."""
    def conv():
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
    return VariationalLayer(conv(), None if kwargs.get("constant_std") is not None else conv(), **kwargs)


class NoiseIndex:
    """The noise of ``samples`` network samples: fresh (``seed=None``), seeded per sample, or given.

    ``noise``: one tensor per variational layer, in order, of shape ``(samples, *unit_shape)`` where the unit
    shape is the layer's output without the batch dimension (the caller draws it, e.g. to derive bootstrap
    weights from the index).
    """

    def __init__(self, samples: int, seed: int | None = None, noise: Sequence[Tensor] | None = None):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if seed is not None and noise is not None:
            raise ValueError("give a seed or the noise, not both")
        if noise is not None and any(n.shape[0] != samples for n in noise):
            raise ValueError(f"every noise tensor must have {samples} rows, got {[tuple(n.shape) for n in noise]}")
        self.samples, self.seed, self.noise = samples, seed, noise

    def draw(self, layer: int, unit_shape: torch.Size, like: Tensor) -> Tensor:
        """``eps`` of one variational layer for all samples: ``(samples, *unit_shape)``."""
        if self.noise is not None:
            if layer >= len(self.noise) or self.noise[layer].shape[1:] != unit_shape:
                raise ValueError(f"noise for variational layer {layer} must have shape "
                                 f"({self.samples}, {', '.join(map(str, unit_shape))})")
            return self.noise[layer].to(like)
        if self.seed is None:
            return torch.randn((self.samples, *unit_shape), dtype=like.dtype, device=like.device)
        rows = [torch.randn(unit_shape, generator=torch.Generator().manual_seed(
            hash((self.seed, layer, t)) & 0x7FFF_FFFF_FFFF_FFFF), dtype=like.dtype) for t in range(self.samples)]
        return torch.stack(rows).to(like.device)


class VariationalSequential(nn.Sequential):
    """``nn.Sequential`` that routes a ``NoiseIndex`` to its variational layers.

    ``forward(x)`` draws fresh noise per element (one sample per input); ``forward(x, index)`` returns
    ``(T, B, *out)``: the ``T`` samples of ``index`` for each of the ``B`` inputs, computed as one batch.
    """

    def forward(self, x: Tensor, index: NoiseIndex | None = None) -> Tensor:
        if index is None:
            return super().forward(x)
        t, expanded, layer_no = index.samples, False, 0
        for module in self:
            if not isinstance(module, VariationalLayer):
                x = module(x)
                continue
            mu, sigma = module.moments(x)                               # (B | T*B, *unit)
            unit = mu.shape[1:]
            eps = index.draw(layer_no, unit, mu).unsqueeze(1)          # (T, 1, *unit)
            if expanded:
                mu, sigma = mu.unflatten(0, (t, -1)), sigma.unflatten(0, (t, -1))
            else:
                mu, sigma = mu.unsqueeze(0), sigma.unsqueeze(0)
            x = module.combine(mu, sigma, eps).flatten(0, 1)           # (T*B, *unit)
            expanded, layer_no = True, layer_no + 1
        if not expanded:
            return x.unsqueeze(0).expand(t, *x.shape)
        return x.unflatten(0, (t, -1))


@dataclass(frozen=True)
class Predictive:
    """Monte-Carlo predictive of ``T`` samples (Eq. 70): mean and the biased (1/T) variance and covariance."""

    samples: Tensor                                                     # (T, B, *out)

    @property
    def mean(self) -> Tensor:
        return self.samples.mean(0)

    @property
    def var(self) -> Tensor:
        return (self.samples - self.mean).square().mean(0)

    def covariance(self) -> Tensor:
        """``(B, D, D)`` over the flattened output of each input, D = prod(out)."""
        dev = (self.samples - self.mean).flatten(2)                     # (T, B, D)
        return torch.einsum("tbi,tbj->bij", dev, dev) / self.samples.shape[0]


def predictive(model: VariationalSequential, x: Tensor, samples: int, seed: int | None = None) -> Predictive:
    """Mean and variance of ``model`` at ``x`` over ``samples`` network samples, evaluated as one batch."""
    return Predictive(model(x, NoiseIndex(samples, seed=seed)))


HEAD_KINDS = ("variational", "mc_dropout")


class SampledConvHead(nn.Module):
    """A 1x1 conv output head evaluated for ``T`` network samples as one batch of the head only.

    ``variational``: a variational 1x1 conv (``variational_conv2d``, softplus std branch) whose noise is one
    ``eps`` per output channel and sample, shared by every pixel and input, so that sample ``t`` is one
    function of the features (the index of the module docstring, translation-equivariant like the conv itself);
    its std branch starts at ``init_std`` everywhere (weights 0) so that its gradient is not zero at the start.
    ``mc_dropout``: the same conv after channel dropout of its input (rate ``dropout``), one keep-mask (scaled by
    ``1 / (1 - dropout)``) per input channel and sample: Monte Carlo dropout over the head's input.

    ``noise_dim`` is the width of one sample's noise; :meth:`draw` gives ``(T, noise_dim)``; ``forward(x, noise)``
    returns ``(T, B, C_out, H, W)``. Under ONNX the noise is a graph input, so the runtime fixes the index.
    """

    def __init__(self, cin: int, cout: int, kind: str, dropout: float = 0.2, init_std: float = 0.1):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {kind!r}")
        if not 0.0 < dropout < 1.0:
            raise ValueError(f"dropout must be in (0, 1), got {dropout}")
        self.kind, self.dropout = kind, dropout
        if kind == "variational":
            self.layer = variational_conv2d(cin, cout, 1, std_activation="softplus")
            nn.init.zeros_(self.layer.std.weight)
            nn.init.constant_(self.layer.std.bias, math.log(math.expm1(init_std)))
            self.noise_dim = cout
        else:
            self.conv = nn.Conv2d(cin, cout, 1)
            self.noise_dim = cin

    @property
    def mean_conv(self) -> nn.Conv2d:
        """The conv of the mean (variational) or of every mask (dropout): where deterministic weights go."""
        return self.layer.mean if self.kind == "variational" else self.conv

    def draw(self, samples: int, generator: torch.Generator | None = None) -> Tensor:
        return draw_head_noise(self.kind, self.noise_dim, samples, self.dropout, generator)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        z = noise[:, None, :, None, None].to(x)                         # (T, 1, D, 1, 1)
        if self.kind == "variational":
            mu, sigma = self.layer.moments(x)                           # (B, C, H, W)
            return mu[None] + sigma[None] * z
        return self.conv((x[None] * z).flatten(0, 1)).unflatten(0, (noise.shape[0], -1))


def sampled_head_state(own: dict[str, Tensor], deterministic: dict[str, Tensor], heads: Sequence[str],
                       kind: str) -> dict[str, Tensor]:
    """A deterministic model's state dict as that of the same model whose 1x1 convs ``heads`` are
    ``SampledConvHead`` s of ``kind`` (``own``: the sampled model's state dict): everything else as it is, each
    conv's weights into the first rows of the head's mean conv (``<head>.layer.mean`` / ``<head>.conv``); the
    rows it lacks (log-variances) and the std branches keep ``own``'s values."""
    state = {k: v for k, v in deterministic.items() if k.split(".")[0] not in heads}
    for name in heads:
        prefix = f"{name}.layer.mean" if kind == "variational" else f"{name}.conv"
        for part in ("weight", "bias"):
            value = own[f"{prefix}.{part}"].clone()
            src = deterministic[f"{name}.{part}"]
            value[: src.shape[0]] = src
            state[f"{prefix}.{part}"] = value
    for k, v in own.items():
        state.setdefault(k, v)
    return state


def draw_head_noise(kind: str, dim: int, samples: int, dropout: float = 0.2,
                    generator: torch.Generator | None = None) -> Tensor:
    """(samples, dim) noise of a ``SampledConvHead``: standard normal, or dropout keep-masks scaled to mean 1."""
    if kind == "variational":
        return torch.randn(samples, dim, generator=generator)
    keep = torch.rand(samples, dim, generator=generator) >= dropout
    return keep.float() / (1.0 - dropout)


def binary_entropy(p: Tensor, eps: float = 1e-6) -> Tensor:
    """Elementwise entropy (nats) of Bernoulli(p)."""
    p = p.clamp(eps, 1.0 - eps)
    return -(p * p.log() + (1.0 - p) * (1.0 - p).log())


def predictive_logit(logit_samples: Tensor) -> Tensor:
    """``(T, ...)`` sample logits -> the logit of the mean probability, ``log mean_t s(z_t) - log mean_t s(-z_t)``,
    each mean taken of its own sigmoids (so neither is ``1 -`` the other) written with one ``exp``: exact in float32
    far into the tails (logits clamped to +-30), where the logit of a mean of sigmoids loses most of its digits and
    ONNX Runtime's sigmoid rounds differently from torch's (an exported Softplus would cost ~10x more)."""
    e = torch.exp(-logit_samples.clamp(-30.0, 30.0))
    return torch.log((1.0 / (1.0 + e)).mean(0)) - torch.log((e / (1.0 + e)).mean(0))


def probit_logit(mu: Tensor, sigma: Tensor) -> Tensor:
    """The logit of the Gaussian predictive ``E[s(mu + sigma * eps)]``, eps ~ N(0, 1), in closed form: MacKay's
    probit approximation ``mu / sqrt(1 + pi sigma^2 / 8)`` (within 0.02 of the exact probability everywhere; the
    limit of ``predictive_logit`` over ever more samples)."""
    return mu * torch.rsqrt(1.0 + (math.pi / 8.0) * sigma.square())


def bernoulli_split(p_samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(T, ...)`` sample probabilities -> predictive mean, aleatoric part ``E_t H(p_t)`` and epistemic part
    (mutual information ``H(E_t p_t) - E_t H(p_t)``, >= 0 by concavity), each of shape ``(...)``."""
    mean = p_samples.mean(0)
    aleatoric = binary_entropy(p_samples).mean(0)
    return mean, aleatoric, (binary_entropy(mean) - aleatoric).clamp(min=0.0)


def gaussian_split(means: Tensor, log_vars: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(T, ...)`` sample means and log-variances -> predictive mean, aleatoric variance ``E_t v_t`` and
    epistemic variance ``Var_t m_t`` (biased, 1/T): the law of total variance of the Gaussian mixture."""
    mean = means.mean(0)
    return mean, log_vars.exp().mean(0), (means - mean).square().mean(0)


def mixture_gaussian_nll(y: Tensor, means: Tensor, log_vars: Tensor) -> Tensor:
    """Elementwise ``-log (1/T) sum_t N(y; m_t, exp(l_t))`` over the sample axis 0 of ``means``/``log_vars``."""
    log_n = -0.5 * ((y - means).square() / log_vars.exp() + log_vars + math.log(2 * math.pi))
    return -(torch.logsumexp(log_n, dim=0) - math.log(means.shape[0]))
