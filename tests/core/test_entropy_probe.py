"""Feature-map sampling, entropy profiles (torch and numpy paths) and forward-hook probes."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from glassbox.entropy import (EntropyError, EntropyProbe, EntropyProfile, ProbeConfig, ProbeError, eloss_terms,
                              feature_samples, knn_entropy, profile_from_features)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class SmallCnn(nn.Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act2 = nn.ReLU(inplace=inplace)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward_features(self, x):
        f1 = self.act1(self.conv1(x))
        f2 = self.act2(self.conv2(f1))
        f3 = self.conv3(f2)
        return {"act1": f1, "act2": f2, "conv3": f3}

    def forward(self, x):
        return self.head(self.forward_features(x)["conv3"].mean((2, 3)))


def test_feature_samples_modes_and_shapes():
    f = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    ch = feature_samples(f, "channels")
    assert ch.shape == (2, 3, 20)
    torch.testing.assert_close(ch[1, 2], f[1, 2].flatten())
    pos = feature_samples(f, "positions")
    assert pos.shape == (2, 20, 3)
    torch.testing.assert_close(pos[1, 7], f[1, :, 1, 2])                   # position 7 = row 1, column 2
    dense = feature_samples(torch.randn(6, 10), "positions")
    assert dense.shape == (1, 6, 10)
    assert feature_samples(torch.randn(2, 4, 9), "positions").shape == (2, 9, 4)


def test_feature_samples_subsampling_is_seeded_sorted_and_shared_by_examples():
    f = torch.randn(2, 32, 16, 16, generator=gen(0))
    a = feature_samples(f, "channels", max_samples=10, max_dim=50, seed=3)
    b = feature_samples(f, "channels", max_samples=10, max_dim=50, seed=3)
    c = feature_samples(f, "channels", max_samples=10, max_dim=50, seed=4)
    assert a.shape == (2, 10, 50)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    flat = f.reshape(2, 32, 256)
    # recover the indices from example 0 and check example 1 used the same ones, in increasing order
    rows = [int((flat[0] == a[0, i, 0].item()).nonzero()[0, 0]) for i in range(10)]
    assert rows == sorted(rows) and len(set(rows)) == 10
    cols = [int((flat[0, rows[0]] == a[0, 0, j]).nonzero()[0, 0]) for j in range(50)]
    torch.testing.assert_close(a[1], flat[1][rows][:, cols])
    with pytest.raises(EntropyError):
        feature_samples(f, "pixels")


@pytest.mark.parametrize("mode", ["channels", "positions"])
def test_feature_samples_subset_structure(mode):
    b, c, h, w = 3, 10, 4, 6
    s_ = h * w
    f = torch.arange(b * c * s_, dtype=torch.float64).reshape(b, c, h, w)     # value = offset in memory
    x = feature_samples(f, mode, max_samples=5, max_dim=4, seed=7)
    assert x.shape == (b, 5, 4)
    v = x.long() - torch.arange(b)[:, None, None] * c * s_                   # remove the example offset
    chan, pos = v // s_, v % s_
    sample_idx, coord_idx = (chan, pos) if mode == "channels" else (pos, chan)
    rows, cols = sample_idx[0, :, 0], coord_idx[0, 0, :]
    assert torch.equal(sample_idx, rows[None, :, None].expand(b, 5, 4))      # same samples in every example
    assert torch.equal(coord_idx, cols[None, None, :].expand(b, 5, 4))
    for idx in (rows, cols):
        assert torch.equal(idx, idx.unique())                                # distinct and increasing
    n_full, d_full = (c, s_) if mode == "channels" else (s_, c)
    assert int(rows.max()) < n_full and int(cols.max()) < d_full


def test_feature_samples_keeps_gradient():
    f = torch.randn(1, 4, 5, 5, requires_grad=True)
    feature_samples(f, "positions", max_samples=7, max_dim=3).sum().backward()
    assert int((f.grad != 0).sum()) == 7 * 3


def test_probe_on_identity_network_gives_zero_deltas():
    convs = []
    for _ in range(3):
        conv = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        nn.init.dirac_(conv.weight)                                      # exact identity
        convs.append(conv)
    model = nn.Sequential(*convs)
    x = torch.randn(2, 6, 12, 12, generator=gen(1))
    with EntropyProbe(model, ["0", "1", "2"], ProbeConfig(sample_mode="positions")) as probe, torch.no_grad():
        model(x)
    prof = probe.profile
    assert np.all(np.isfinite(prof.entropy_nats))
    np.testing.assert_array_equal(prof.delta_nats, 0.0)
    assert prof.eloss_variance == 0.0 and prof.eloss_direction == 0.0


def test_probe_matches_profile_from_features_and_numpy_path():
    model = SmallCnn().eval()
    cfg = ProbeConfig(max_samples=64, max_dim=48)
    x = torch.randn(3, 3, 16, 16, generator=gen(2))
    with EntropyProbe(model, ["act1", "act2", "conv3"], cfg, model_name="cnn") as probe, torch.no_grad():
        model(x)
        feats = model.forward_features(x)
    hooked = probe.profile
    direct = profile_from_features(feats, cfg, model_name="cnn")
    numpy_path = profile_from_features({k: v.numpy() for k, v in feats.items()}, cfg, model_name="cnn")
    for prof in (direct, numpy_path):
        assert prof.layer_names == ["act1", "act2", "conv3"]
        assert prof.entropy_nats.dtype == np.float64 and prof.delta_nats.dtype == np.float64
        np.testing.assert_allclose(prof.entropy_nats, hooked.entropy_nats, rtol=1e-6)
    np.testing.assert_array_equal(hooked.samples_per_layer, [8, 8, 8])
    np.testing.assert_array_equal(hooked.sample_dim_per_layer, [48, 48, 48])
    h = hooked.entropy_nats
    np.testing.assert_allclose(hooked.delta_nats, [0.0, h[1] - h[0], h[2] - h[1]])
    tail = np.diff(h)
    assert hooked.eloss_variance == pytest.approx(np.var(tail))
    assert hooked.eloss_direction == pytest.approx(-np.sum(tail**2))
    assert hooked.estimator == "knn" and hooked.estimator_params["k"] == "1"
    assert hooked.compute_time_ms > 0.0


def test_profile_is_batch_mean_of_per_example_estimates():
    f = torch.randn(3, 5, 20, generator=gen(3))
    for batch_mode in ("mean", "pooled"):
        cfg = ProbeConfig(sample_mode="positions", max_samples=None, max_dim=None, batch=batch_mode)
        prof = profile_from_features({"a": f}, cfg)
        x = f.transpose(1, 2)                                                # (3, 20, 5)
        if batch_mode == "mean":
            expect = float(torch.stack([knn_entropy(x[i]) for i in range(3)]).mean())
        else:
            expect = float(knn_entropy(x.reshape(60, 5)))
        assert prof.entropy_nats[0] == pytest.approx(expect, rel=1e-6)


def test_profile_scale_rule_through_positions_mode():
    f = torch.randn(1, 4, 30, dtype=torch.float64, generator=gen(4))
    cfg = ProbeConfig(sample_mode="positions", max_samples=None, max_dim=None)
    prof = profile_from_features({"a": f, "b": 3.0 * f + 1.0}, cfg)
    assert prof.delta_nats[1] == pytest.approx(4 * math.log(3.0), rel=1e-9)


def test_probe_every_n_and_request():
    model = SmallCnn().eval()
    probe = EntropyProbe(model, ["act1", "conv3"], ProbeConfig(every_n=3))
    x = torch.randn(1, 3, 8, 8, generator=gen(5))
    probed = []
    with torch.no_grad():
        for i in range(7):
            if i == 5:
                probe.request()
            before = probe.profile
            model(x)
            probed.append(probe.profile is not before)
    probe.remove()
    assert probed == [True, False, False, True, False, True, True]
    assert probe.forward_count == 7


def test_disabled_probe_registers_no_hook_and_remove_detaches():
    model = SmallCnn()
    off = EntropyProbe(model, ["act1", "conv3"], ProbeConfig(enabled=False))
    assert not off.attached
    assert all(not m._forward_hooks for m in model.modules())
    model(torch.randn(1, 3, 8, 8))
    assert off.profile is None
    with EntropyProbe(model, ["act1", "conv3"], ProbeConfig()) as on:
        assert on.attached and model.act1._forward_hooks
    assert all(not m._forward_hooks for m in model.modules())


def test_probe_gradients_reach_parameters_with_inplace_relu():
    torch.manual_seed(0)
    model = SmallCnn(inplace=True)
    cfg = ProbeConfig(max_samples=None, max_dim=None)
    with EntropyProbe(model, ["conv1", "conv2", "conv3"], cfg) as probe:
        out = model(torch.randn(2, 3, 10, 10, generator=gen(6)))
        assert all(t.requires_grad for t in probe.entropies.values())
        terms = eloss_terms(probe.entropies, [["conv1", "conv2", "conv3"]])
        total = terms["eloss_var"] + 0.1 * terms["eloss_dir"]
        (out.sum() + total).backward()                # conv outputs were modified in place by ReLU
    assert float(terms["eloss_var"].detach()) == pytest.approx(probe.profile.eloss_variance, rel=1e-5)
    for conv in (model.conv1, model.conv2, model.conv3):
        assert conv.weight.grad is not None and float(conv.weight.grad.abs().sum()) > 0.0
    assert probe.sample_dims == {"conv1": 100, "conv2": 100, "conv3": 100}


def test_probe_errors():
    model = SmallCnn()
    with pytest.raises(ProbeError):
        EntropyProbe(model, ["nope"], ProbeConfig())
    with pytest.raises(ProbeError):
        EntropyProbe(model, [], ProbeConfig())
    with pytest.raises(ValueError):
        ProbeConfig(estimator="histogram")
    with pytest.raises(ProbeError):                   # 1 sample cannot have a nearest neighbour
        profile_from_features({"a": torch.randn(1, 1, 4, 4)}, ProbeConfig())


class FeatureOutputs(nn.Module):
    """Returns the logits and every probed feature map, as the ONNX exports of glassbox models do."""

    def __init__(self, model: SmallCnn) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        feats = self.model.forward_features(x)
        return self.model.head(feats["conv3"].mean((2, 3))), feats["act1"], feats["act2"], feats["conv3"]


def test_profile_from_onnx_runtime_outputs_matches_torch(tmp_path):
    from glassbox.export.onnx import export_onnx
    from glassbox.runtime import OrtBackend

    torch.manual_seed(0)
    model = SmallCnn().eval()
    x = torch.randn(2, 3, 16, 16, generator=gen(7))
    names = ["logits", "act1", "act2", "conv3"]
    path = export_onnx(FeatureOutputs(model), (x,), tmp_path / "cnn.onnx", input_names=["image"],
                       output_names=names)
    outputs = OrtBackend(path).run({"image": x.numpy()}).outputs
    cfg = ProbeConfig(max_samples=None, max_dim=64)
    ort_profile = profile_from_features({n: outputs[n] for n in names[1:]}, cfg, model_name="cnn")
    with torch.no_grad():
        torch_profile = profile_from_features(model.forward_features(x), cfg, model_name="cnn")
    assert ort_profile.layer_names == names[1:]
    assert ort_profile.entropy_nats.dtype == np.float64
    np.testing.assert_allclose(ort_profile.entropy_nats, torch_profile.entropy_nats, rtol=1e-4)


@pytest.mark.parametrize("estimator", ["knn", "gaussian", "channel"])
def test_profile_dict_round_trip(estimator):
    cfg = ProbeConfig(estimator=estimator, sample_mode="positions")
    prof = profile_from_features({"a": np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32),
                                  "b": np.random.default_rng(1).standard_normal((2, 4, 3, 3)).astype(np.float32)},
                                 cfg, model_name="m")
    back = EntropyProfile.from_dict(prof.to_dict())
    assert back.layer_names == prof.layer_names and back.estimator == estimator
    np.testing.assert_array_equal(back.entropy_nats, prof.entropy_nats)
    np.testing.assert_array_equal(back.samples_per_layer, [36, 9])
    assert back.samples_per_layer.dtype == np.uint32
    assert back.eloss_direction == prof.eloss_direction
