"""The VNN benchmark of the seed (OpenDR D4.2, Sec. 2.7): the regression testbed of Epistemic Neural Networks.

The testbed (Osband et al., "Epistemic Neural Networks", NeurIPS 2021 version, the one the seed evaluates on):

1. *Generative model.* Inputs x ~ N(0, I_d). The unknown function is drawn from a prior over functions given by a
   random two-hidden-layer ReLU network: f(x) = w . psi(x), psi(x) = relu(W2 relu(W1 x + b1)) / sqrt(m),
   W1 ~ N(0, 1/d), b1 ~ N(0, 1/d), W2 ~ N(0, 1/m), w ~ N(0, I_m), m = ``prior_width``. These are the weight
   scales of the testbed's kernel (W_std = 1 per fan-in, b_std = 1/sqrt(d) on the first layer); the testbed takes
   the infinite-width limit (the NNGP kernel, exact GP inference), which costs O(n^3) and is out of reach at
   n = 100 000 on one core. At finite width the output layer is the only random part, so the posterior of f
   given the data is still exact and Gaussian (Bayesian linear regression on psi), at O(n m^2).
2. *Data.* n = ratio * d training pairs y = f(x) + noise_std * e; ``num_test`` test inputs.
3. *Truth.* The exact posterior mean and std of f at every test input (the epistemic posterior, no observation
   noise), plus the testbed's std ridge of 1e-3.
4. *Agents* see the data and the noise std, and return ``eval_samples`` samples of f at the test inputs; their
   mean and std (plus the same ridge) make a Gaussian per test input.
5. *Metric.* KL(truth || agent) per test input, averaged over the test inputs (the testbed's direction and
   formula, ``gaussian_kl``). The seed's Eq. (71) prints log(sigma_p / sigma_gt) + (sigma_p^2 + (mu_p -
   mu_gt)^2) / (2 sigma_gt^2) - 1/2 for KL(P || GT): the fraction is that of KL(P || GT), the log term that of
   KL(GT || P), so it is neither. The reverse direction KL(agent || truth) is reported as well.

Agents (two hidden layers of ``hidden`` units, Adam at ``lr``, ``steps`` minibatches of ``batch_size``, the
testbed's defaults): ``vnn`` (identity activations everywhere), ``vnn_lrelu`` (Leaky ReLU after sampling on the
hidden layers), ``vnn_lrelu_mean`` (Leaky ReLU on their mean branch instead), all three trained with the L2 loss
over ``vnn_index_samples`` index samples with exponential bootstrap weights and a cosine learning-rate decay
(the set-up the seed's authors ran in the testbed); ``dropout`` (MC dropout on the input and hidden layers);
``bbb`` (Bayes by Backprop: mean-field Gaussian weights, prior N(0, 1/fan_in), the ELBO with the known noise
std, local reparameterisation); ``ensemble`` (deep ensemble with additive random prior networks and Gaussian
target noise per member, the testbed's ensemble agent; its samples are its members).
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from glassbox.vnn import NoiseIndex, VariationalSequential, variational_linear

AGENT_NAMES = ("vnn", "vnn_lrelu", "vnn_lrelu_mean", "dropout", "bbb", "ensemble")


@dataclass(frozen=True)
class SweepConfig:
    """Sizes of the sweep and of the agents (the defaults: the full run of ``bench/bench_vnn.py``)."""

    input_dims: tuple[int, ...] = (10, 100, 1000)
    data_ratios: tuple[float, ...] = (1, 10, 100)
    noise_stds: tuple[float, ...] = (0.01, 0.1, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    agents: tuple[str, ...] = AGENT_NAMES
    prior_width: int = 1024             # hidden width m of the random generative network
    num_test: int = 1000
    eval_samples: int = 100             # samples per agent at the test inputs (the ensemble uses its members)
    std_ridge: float = 1e-3
    hidden: int = 50
    steps: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    vnn_index_samples: int = 10
    dropout_rate: float = 0.1
    bbb_weight_samples: int = 8
    bbb_init_std: float = 0.5           # initial posterior std, as a fraction of the prior std
    ensemble_size: int = 10
    ensemble_prior_scale: float = 1.0
    ensemble_noise_scale: float = 1.0

    def __post_init__(self):
        unknown = set(self.agents) - set(AGENT_NAMES)
        if unknown:
            raise ValueError(f"unknown agents {sorted(unknown)}; choose from {AGENT_NAMES}")
        if min(self.noise_stds) <= 0 or min(self.data_ratios) <= 0 or min(self.input_dims) < 1:
            raise ValueError("noise stds and data ratios must be > 0, input dims >= 1")
        if self.steps < 1 or self.eval_samples < 2 or self.vnn_index_samples < 1:
            raise ValueError("steps and vnn_index_samples must be >= 1, eval_samples >= 2")


#: the CI configuration: one small problem family, short training (behaviour, not the published numbers)
TINY = SweepConfig(input_dims=(10,), data_ratios=(1, 100), noise_stds=(0.1,), seeds=(0,), prior_width=128,
                     num_test=200, eval_samples=50, hidden=32, steps=300)


def _gen(*keys: int | float | str) -> torch.Generator:
    """A generator seeded by a tuple of keys (stable across runs: hashes of numbers and of fixed strings)."""
    text = "/".join(map(str, keys))
    return torch.Generator().manual_seed(int.from_bytes(text.encode(), "little") % (2 ** 61 - 1))


# ---------------------------------------------------------------------------------------------- the metric


def gaussian_kl(mean_p: Tensor, std_p: Tensor, mean_q: Tensor, std_q: Tensor) -> Tensor:
    """KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)), element-wise, in nats:
    log(std_q / std_p) + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2."""
    return torch.log(std_q / std_p) + (std_p.square() + (mean_p - mean_q).square()) / (2 * std_q.square()) - 0.5


# --------------------------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class Problem:
    x_train: Tensor                     # (n, d) float32
    y_train: Tensor                     # (n, 1)
    x_test: Tensor                      # (num_test, d)
    mean: Tensor                        # (num_test,) float64: exact posterior mean of f
    std: Tensor                         # (num_test,) float64: exact posterior std of f (no ridge)
    noise_std: float


class RandomMLPPrior:
    """The generative prior: features psi of a random two-hidden-layer ReLU network (see the module docstring)."""

    def __init__(self, input_dim: int, width: int, seed: int):
        g = _gen("prior", input_dim, seed)
        self.w1 = torch.randn(input_dim, width, generator=g) / math.sqrt(input_dim)
        self.b1 = torch.randn(width, generator=g) / math.sqrt(input_dim)
        self.w2 = torch.randn(width, width, generator=g) / math.sqrt(width)
        self.width = width

    def features(self, x: Tensor) -> Tensor:
        return torch.relu(torch.relu(x @ self.w1 + self.b1) @ self.w2) / math.sqrt(self.width)


def make_problems(input_dim: int, data_ratio: float, noise_stds: tuple[float, ...], seed: int,
                  cfg: SweepConfig, chunk: int = 8192) -> list[Problem]:
    """One problem per noise std, sharing inputs, function and the standard-normal noise draw."""
    prior = RandomMLPPrior(input_dim, cfg.prior_width, seed)
    n = max(1, int(data_ratio * input_dim))
    g = _gen("data", input_dim, data_ratio, seed)
    x_train = torch.randn(n, input_dim, generator=g)
    x_test = torch.randn(cfg.num_test, input_dim, generator=g)
    w_true = torch.randn(cfg.prior_width, generator=g, dtype=torch.float64)
    e = torch.randn(n, generator=g, dtype=torch.float64)
    gram = torch.zeros(cfg.prior_width, cfg.prior_width, dtype=torch.float64)
    psi_f = torch.zeros(cfg.prior_width, dtype=torch.float64)
    psi_e = torch.zeros(cfg.prior_width, dtype=torch.float64)
    f_train = torch.empty(n, dtype=torch.float64)
    for lo in range(0, n, chunk):
        psi = prior.features(x_train[lo:lo + chunk]).double()               # (c, m)
        gram += psi.T @ psi
        f_train[lo:lo + chunk] = psi @ w_true
        psi_f += psi.T @ f_train[lo:lo + chunk]
        psi_e += psi.T @ e[lo:lo + chunk]
    psi_test = prior.features(x_test).double()                              # (num_test, m)
    eye = torch.eye(cfg.prior_width, dtype=torch.float64)
    problems = []
    for noise_std in noise_stds:
        chol = torch.linalg.cholesky(eye + gram / noise_std ** 2)           # posterior precision of w
        w_mean = torch.cholesky_solve(((psi_f + noise_std * psi_e) / noise_std ** 2)[:, None], chol)[:, 0]
        half = torch.linalg.solve_triangular(chol, psi_test.T, upper=False)  # (m, num_test)
        y = (f_train + noise_std * e).float()[:, None]
        problems.append(Problem(x_train, y, x_test, psi_test @ w_mean, half.square().sum(0).sqrt(), noise_std))
    return problems


def evaluate(problem: Problem, samples: Tensor, std_ridge: float) -> dict[str, float]:
    """From agent samples ``(T, num_test)``: mean KL(truth || agent) and KL(agent || truth), the mean squared
    error of the agent's mean, the mean predictive std of agent and truth (ridge included) and the geometric
    mean of their ratio."""
    s = samples.double()
    mean, std = s.mean(0), s.std(0, correction=0) + std_ridge
    true_std = problem.std + std_ridge
    return {"kl": float(gaussian_kl(problem.mean, true_std, mean, std).mean()),
            "kl_reverse": float(gaussian_kl(mean, std, problem.mean, true_std).mean()),
            "mse_mean": float((mean - problem.mean).square().mean()),
            "agent_std": float(std.mean()), "true_std": float(true_std.mean()),
            "std_ratio": float((std / true_std).log().mean().exp())}    # geometric mean of agent / true std


def posterior_samples(problem: Problem, samples: int, seed: int = 0) -> Tensor:
    """Samples of the exact posterior marginals at the test inputs: the oracle agent, ``(T, num_test)``."""
    z = torch.randn(samples, problem.mean.shape[0], generator=_gen("oracle", seed), dtype=torch.float64)
    return problem.mean + problem.std * z


# ---------------------------------------------------------------------------------------------- the agents

Sampler = Callable[[Tensor, int], Tensor]                                # (x, T) -> (T, N)


def _batches(cfg: SweepConfig, n: int, seed: int):
    """``steps`` minibatches of data indices, drawn with replacement."""
    g = _gen("batches", seed)
    for _ in range(cfg.steps):
        yield torch.randint(n, (cfg.batch_size,), generator=g)


def _in_chunks(fn: Callable[[Tensor], Tensor], x: Tensor, rows: int = 100) -> Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[lo:lo + rows]) for lo in range(0, x.shape[0], rows)], dim=1)


def fit_vnn(p: Problem, cfg: SweepConfig, seed: int, activation: str, mean_activation: str = "identity"
            ) -> Sampler:
    """A VNN: ``activation`` after sampling and ``mean_activation`` on the mean branch of the hidden layers.

    Loss: for each of ``vnn_index_samples`` index samples z (all the eps of one network sample), the squared
    error weighted per data point by w_i(z) = ((b_i . z)^2 + (c_i . z)^2) / (2 k), b_i, c_i ~ N(0, I_k) fixed per
    data point: an exponential(1) bootstrap weight that is a smooth, consistent function of the index.
    """
    torch.manual_seed(seed)
    d, h = p.x_train.shape[1], cfg.hidden
    hidden = {"activation": activation, "mean_activation": mean_activation}
    net = VariationalSequential(variational_linear(d, h, **hidden), variational_linear(h, h, **hidden),
                                variational_linear(h, 1))
    widths, k, n = (h, h, 1), 2 * h + 1, p.x_train.shape[0]
    g = _gen("bootstrap", seed)
    b, c = torch.randn(n, k, generator=g), torch.randn(n, k, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    # cosine decay from lr to lr / 1000 over the run
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    t = cfg.vnn_index_samples
    for idx in _batches(cfg, n, seed):
        eps = [torch.randn(t, w) for w in widths]
        z = torch.cat(eps, dim=1)                                            # (T, k)
        out = net(p.x_train[idx], NoiseIndex(t, noise=eps))[..., 0]          # (T, B)
        weights = ((b[idx] @ z.T).square() + (c[idx] @ z.T).square()).T / (2 * k)
        loss = (weights * (out - p.y_train[idx, 0]).square()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return lambda x, samples: _in_chunks(lambda xc: net(xc, NoiseIndex(samples, seed=seed))[..., 0], x)


class _DropoutMLP(nn.Module):
    def __init__(self, d: int, h: int, rate: float):
        super().__init__()
        self.rate, self.layers = rate, nn.ModuleList([nn.Linear(d, h), nn.Linear(h, h), nn.Linear(h, 1)])

    def forward(self, x: Tensor) -> Tensor:                                  # dropout always on (MC dropout)
        for i, layer in enumerate(self.layers):
            x = layer(F.dropout(x, self.rate, training=True))
            x = torch.relu(x) if i < len(self.layers) - 1 else x
        return x


def fit_dropout(p: Problem, cfg: SweepConfig, seed: int) -> Sampler:
    torch.manual_seed(seed)
    net = _DropoutMLP(p.x_train.shape[1], cfg.hidden, cfg.dropout_rate)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    for idx in _batches(cfg, p.x_train.shape[0], seed):
        loss = (net(p.x_train[idx]) - p.y_train[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sample(x: Tensor, samples: int) -> Tensor:
        return _in_chunks(lambda xc: net(xc.repeat(samples, 1))[:, 0].unflatten(0, (samples, -1)), x)
    return sample


class _BayesLinear(nn.Module):
    """Mean-field Gaussian weights and biases, sampled with the local reparameterisation: the pre-activation of
    each (sample, input) is drawn from its exact Gaussian, N(x W_mu + b_mu, x^2 W_std^2 + b_std^2)."""

    def __init__(self, d_in: int, d_out: int, init_std: float):
        super().__init__()
        init = nn.Linear(d_in, d_out)
        self.w_mu, self.b_mu = nn.Parameter(init.weight.detach().T.clone()), nn.Parameter(init.bias.detach().clone())
        self.prior_w, self.prior_b = 1 / math.sqrt(d_in), 1.0
        rho = math.log(math.expm1(init_std * self.prior_w))                  # softplus(rho) = init_std * prior
        self.w_rho = nn.Parameter(torch.full((d_in, d_out), rho))
        self.b_rho = nn.Parameter(torch.full((d_out,), rho))

    def forward(self, x: Tensor, samples: int | None = None) -> Tensor:
        """``samples`` draws per input of a ``(B, d_in)`` batch, ``(samples, B, d_out)``; else one per row."""
        mean = x @ self.w_mu + self.b_mu
        std = (x.square() @ F.softplus(self.w_rho).square() + F.softplus(self.b_rho).square()).sqrt()
        eps = torch.randn(mean.shape if samples is None else (samples, *mean.shape))
        return mean + std * eps

    def kl(self) -> Tensor:
        def term(mu, rho, prior):
            return gaussian_kl(mu, F.softplus(rho), torch.zeros_like(mu), torch.full_like(mu, prior)).sum()
        return term(self.w_mu, self.w_rho, self.prior_w) + term(self.b_mu, self.b_rho, self.prior_b)


def fit_bbb(p: Problem, cfg: SweepConfig, seed: int) -> Sampler:
    torch.manual_seed(seed)
    d, h, n = p.x_train.shape[1], cfg.hidden, p.x_train.shape[0]
    layers = nn.ModuleList([_BayesLinear(a, b, cfg.bbb_init_std) for a, b in ((d, h), (h, h), (h, 1))])

    def forward(x: Tensor, samples: int) -> Tensor:                         # (B, d) -> (K, B)
        for i, layer in enumerate(layers):
            x = layer(x, samples if i == 0 else None)
            x = torch.relu(x) if i < len(layers) - 1 else x
        return x[..., 0]

    opt = torch.optim.Adam(layers.parameters(), lr=cfg.lr)
    for idx in _batches(cfg, n, seed):
        nll = (forward(p.x_train[idx], cfg.bbb_weight_samples) - p.y_train[idx, 0]).square().mean()
        loss = nll / (2 * p.noise_std ** 2) + sum(layer.kl() for layer in layers) / n   # negative ELBO / n
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda x, samples: _in_chunks(lambda xc: forward(xc, samples), x)


class _EnsembleMLP(nn.Module):
    """``members`` MLPs evaluated as one batch: the first layer as one matrix product, then ``(M, B, h)``."""

    def __init__(self, members: int, d: int, h: int):
        super().__init__()
        def uniform(*shape, fan_in):                                        # nn.Linear's default init
            return nn.Parameter(torch.empty(*shape).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in)))
        self.members, self.h = members, h
        self.w1, self.b1 = uniform(d, members * h, fan_in=d), uniform(members * h, fan_in=d)
        self.w2, self.b2 = uniform(members, h, h, fan_in=h), uniform(members, 1, h, fan_in=h)
        self.w3, self.b3 = uniform(members, h, 1, fan_in=h), uniform(members, 1, 1, fan_in=h)

    def forward(self, x: Tensor) -> Tensor:                                 # (B, d) -> (M, B)
        x = torch.relu(x @ self.w1 + self.b1).unflatten(1, (self.members, self.h)).transpose(0, 1)
        x = torch.relu(torch.bmm(x, self.w2) + self.b2)
        return (torch.bmm(x, self.w3) + self.b3)[..., 0]


def fit_ensemble(p: Problem, cfg: SweepConfig, seed: int) -> Sampler:
    torch.manual_seed(seed)
    d, n, m = p.x_train.shape[1], p.x_train.shape[0], cfg.ensemble_size
    net, prior = _EnsembleMLP(m, d, cfg.hidden), _EnsembleMLP(m, d, cfg.hidden).requires_grad_(False)
    scale = cfg.ensemble_prior_scale
    # fixed per (member, data point): the prior networks' outputs and the Gaussian target noise
    target = (p.y_train[:, 0] + cfg.ensemble_noise_scale * p.noise_std
              * torch.randn(m, n, generator=_gen("target-noise", seed)) - scale * _in_chunks(prior, p.x_train, 4096))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    for idx in _batches(cfg, n, seed):
        loss = (net(p.x_train[idx]) - target[:, idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda x, samples: _in_chunks(lambda xc: net(xc) + scale * prior(xc), x)   # the members are the samples


FITS: dict[str, Callable[[Problem, SweepConfig, int], Sampler]] = {
    "vnn": lambda p, cfg, seed: fit_vnn(p, cfg, seed, "identity"),
    "vnn_lrelu": lambda p, cfg, seed: fit_vnn(p, cfg, seed, "leaky_relu"),
    "vnn_lrelu_mean": lambda p, cfg, seed: fit_vnn(p, cfg, seed, "identity", mean_activation="leaky_relu"),
    "dropout": fit_dropout,
    "bbb": fit_bbb,
    "ensemble": fit_ensemble,
}


# ---------------------------------------------------------------------------------------------- the sweep


@dataclass
class CaseResult:
    input_dim: int
    data_ratio: float
    noise_std: float
    seed: int
    agent: str
    kl: float
    kl_reverse: float
    mse_mean: float
    agent_std: float
    true_std: float
    std_ratio: float
    cpu_s: float                        # CPU time of training and evaluation


def run_case(p: Problem, agent: str, cfg: SweepConfig, seed: int) -> dict[str, float]:
    t0 = time.process_time()
    sampler = FITS[agent](p, cfg, seed)
    with torch.no_grad():
        samples = sampler(p.x_test, cfg.eval_samples)
    out = evaluate(p, samples, cfg.std_ridge)
    out["cpu_s"] = time.process_time() - t0
    return out


def run_testbed(cfg: SweepConfig, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Every (input dim, data ratio, noise std, seed, agent): one row of KLs and errors."""
    rows = []
    for d in cfg.input_dims:
        for ratio in cfg.data_ratios:
            for seed in cfg.seeds:
                for p in make_problems(d, ratio, cfg.noise_stds, seed, cfg):
                    for agent in cfg.agents:
                        res = run_case(p, agent, cfg, seed)
                        rows.append(asdict(CaseResult(d, ratio, p.noise_std, seed, agent, **res)))
                        if progress:
                            progress(f"d={d} ratio={ratio} noise={p.noise_std} seed={seed} {agent}: "
                                     f"KL {res['kl']:.4g} ({res['cpu_s']:.1f} CPU-s)")
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per setting and agent: mean and std of KL over seeds. Per agent: mean and median over the settings, the
    mean rank among the agents per case (setting and seed, 1 = lowest), the settings won, the same rank and the
    median for the reverse KL, and the mean KL per input dimension. ``wins[a][b]``: cases where a's KL < b's."""
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    cases, by = {}, {}
    for r in rows:
        cases.setdefault((r["input_dim"], r["data_ratio"], r["noise_std"], r["seed"]), {})[r["agent"]] = r
        by.setdefault((r["input_dim"], r["data_ratio"], r["noise_std"]), {}).setdefault(r["agent"], []).append(r)
    table = []
    for (d, ratio, noise), per in by.items():
        row = {"input_dim": d, "data_ratio": ratio, "noise_std": noise}
        for a in agents:
            row[a] = statistics.fmean(r["kl"] for r in per[a])
            row[a + "_sd"] = statistics.pstdev(r["kl"] for r in per[a])
        table.append(row)

    def mean_rank(metric: str) -> dict[str, float]:
        ranks = {a: [] for a in agents}
        for case in cases.values():
            for rank, a in enumerate(sorted(case, key=lambda b: case[b][metric]), start=1):
                ranks[a].append(rank)
        return {a: statistics.fmean(v) for a, v in ranks.items()}

    rank, rank_reverse = mean_rank("kl"), mean_rank("kl_reverse")
    dims = list(dict.fromkeys(t["input_dim"] for t in table))
    per_agent = {}
    for a in agents:
        per_agent[a] = {
            "mean_kl": statistics.fmean(t[a] for t in table), "median_kl": statistics.median(t[a] for t in table),
            "mean_rank": rank[a], "settings_won": sum(min(agents, key=lambda b: t[b]) == a for t in table),
            "median_kl_reverse": statistics.median(r["kl_reverse"] for r in rows if r["agent"] == a),
            "mean_rank_reverse": rank_reverse[a],
            "mean_kl_by_dim": {d: statistics.fmean(t[a] for t in table if t["input_dim"] == d) for d in dims}}
    wins = {a: {b: sum(c[a]["kl"] < c[b]["kl"] for c in cases.values()) for b in agents if b != a} for a in agents}
    return {"settings": table, "agents": per_agent, "wins": wins, "cases": len(cases)}
