"""FMCS convergence-phase markers, the stratified split and FMCE-Net shapes."""
import numpy as np
import pytest
import torch

from glassbox.entropy import FmceNet, FmcsError, cqi, fmcs, smooth_losses, stratified_split

EPOCHS = np.arange(1, 101)
EXP_LOSS = 2.0 * np.exp(-0.1 * EPOCHS) + 0.05


def test_worked_example_markers_both_smoothings():
    # Reference values computed independently for L_m = 2 exp(-0.1 m) + 0.05, alpha 0.85, B 5, mu 1e-4, K 10.
    ema = fmcs(EXP_LOSS, num_phases=10, alpha=0.85, window=5, mu=1e-4)
    assert ema.markers.tolist() == [10, 15, 20, 24, 29, 34, 39, 45, 54, 88]
    assert ema.start_epoch == 1 and ema.converged
    printed = fmcs(EXP_LOSS, num_phases=10, alpha=0.85, window=5, mu=1e-4, smoothing="as_printed")
    assert printed.markers.tolist() == [6, 10, 14, 18, 22, 26, 31, 37, 46, 80]


def test_smoothing_and_cqi_against_explicit_loops():
    rng = np.random.default_rng(0)
    loss = np.abs(rng.standard_normal(30)) + 0.1
    s = smooth_losses(loss, 0.7)
    ref = [loss[0]]
    for value in loss[1:]:
        ref.append(0.7 * ref[-1] + 0.3 * value)
    np.testing.assert_allclose(s, ref, rtol=1e-12)
    c = cqi(s, window=4)
    assert c[0] == np.inf
    for m in range(1, 30):
        terms = [abs(s[j] - s[j - 1]) for j in range(max(1, m - 3), m + 1)]
        assert c[m] == pytest.approx(np.mean(terms), rel=1e-12)
    assert (c >= 0).all()
    np.testing.assert_array_equal(cqi(np.full(10, 0.5))[1:], 0.0)


def test_log_linear_loss_gives_evenly_spaced_markers():
    loss = np.exp(-0.05 * np.arange(200))
    loss[150:] = loss[149]                                    # flat tail: CQI reaches mu
    res = fmcs(loss, num_phases=5, alpha=0.5, window=3, mu=1e-6)
    gaps = np.diff(np.concatenate([[res.start_epoch], res.markers]))[:-1]   # phases inside the linear part
    assert gaps.max() - gaps.min() <= 1
    assert res.markers[-1] == np.flatnonzero(res.cqi <= 1e-6)[0] + 1
    assert (np.diff(res.markers) >= 0).all() and res.markers[0] > res.start_epoch


def test_start_epoch_is_earliest_argmax_and_nearest_rule():
    loss = np.concatenate([[1.0, 3.0, 3.0], 3.0 * np.exp(-0.2 * np.arange(1, 80))])
    res = fmcs(loss, num_phases=4, mu=1e-4)
    assert res.start_epoch == 2
    near = fmcs(loss, num_phases=4, mu=1e-4, marker_rule="nearest")
    assert near.markers[-1] == res.markers[-1]
    assert np.all(np.abs(near.markers - res.markers) <= 1)


def test_no_convergence_raises_or_falls_back():
    loss = np.linspace(2.0, 1.0, 20)                          # still falling steadily
    with pytest.raises(FmcsError):
        fmcs(loss, mu=1e-4)
    res = fmcs(loss, mu=1e-4, on_no_convergence="argmin")
    assert not res.converged and res.markers[-1] == 20
    with pytest.raises(FmcsError):
        smooth_losses(np.array([1.0, np.nan]))


def test_stratified_split_is_balanced_and_disjoint():
    labels = np.repeat(np.arange(1, 11), 40)
    np.random.default_rng(1).shuffle(labels)
    train, test = stratified_split(labels, 0.75, seed=3)
    assert len(np.intersect1d(train, test)) == 0
    assert np.bincount(labels[train], minlength=11)[1:].tolist() == [30] * 10
    assert np.bincount(labels[test], minlength=11)[1:].tolist() == [10] * 10
    again, _ = stratified_split(labels, 0.75, seed=3)
    np.testing.assert_array_equal(train, again)


def test_fmce_net_shapes():
    net = FmceNet(1024, num_phases=10)
    x = torch.randn(2, 1024, 7, 7)
    assert net.features[:3](x).shape == (2, 512, 3, 3)
    assert net.features(x).shape == (2, 256, 1, 1)
    assert net(x).shape == (2, 10)
    big = FmceNet(2048, num_phases=10)
    assert big.features[:2](torch.randn(1, 2048, 7, 7)).shape == (1, 1024, 7, 7)
    assert big(torch.randn(1, 2048, 7, 7)).shape == (1, 10)
