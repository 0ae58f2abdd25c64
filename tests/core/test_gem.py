"""GEM fusion: shapes per mode, Eq. 1 stop-gradient, dead-sensor algebra, symmetry, masks, Gumbel-Softmax,
and the CenterNet encode/decode round trip."""

import numpy as np
import pytest
import torch
from torch import nn

from glassbox.heads import Detection2DHead
from glassbox.vision.centernet import centernet_loss, decode, encode_targets, focal_loss, score_entropy
from glassbox.vision.gem import FUSIONS, Gem, GemConfig, GemError, ReliabilityWeight, display_share, gumbel_softmax

H, W = 64, 96


def _inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, H, W, generator=g), torch.rand(b, 1, H, W, generator=g)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_mode_runs(fusion):
    model = Gem(GemConfig(fusion=fusion, width_mult=0.25)).eval()
    feats = model.forward_features(*_inputs())
    f = model.feat_channels
    expected = 2 * f if fusion in ("scalar_concat", "mask_concat", "gumbel") else f
    assert feats["fused"].shape == (2, expected, H // 8, W // 8)
    head = model.forward_head(feats)
    assert isinstance(head, Detection2DHead)
    heat, size, offset, w_r, w_t = head
    assert heat.shape == (2, 3, H // 8, W // 8) and size.shape == offset.shape == (2, 2, H // 8, W // 8)
    assert w_r.shape == w_t.shape == (2,)
    assert all(torch.isfinite(t).all() for t in (heat, size, offset, w_r, w_t))


@pytest.mark.parametrize("fusion", ["scalar_avg", "mask_concat", "gumbel", "rgb", "thermal"])
@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet"])
def test_stride_4_head_resolves_twice_as_fine(fusion, backbone):
    model = Gem(GemConfig(fusion=fusion, backbone=backbone, width_mult=0.25, stride=4)).eval()
    feats = model.forward_features(*_inputs())
    assert feats["fused"].shape[2:] == (H // 8, W // 8)          # fusion stays at the backbones' stride 8
    heat, size, offset, w_r, w_t = model.forward_head(feats)
    assert model.stride == 4
    assert heat.shape == (2, 3, H // 4, W // 4) and size.shape == offset.shape == (2, 2, H // 4, W // 4)
    # the pyramid's stride-4 maps are those of the backbones' first layers (split where stride 8 begins)
    bb = model.backbone_rgb or model.backbone_thermal
    x = _inputs()[0] if model.backbone_rgb is not None else _inputs()[1]
    s4, s8 = bb.levels(x)
    assert s4.shape[1:] == (bb.stride4_channels, H // 4, W // 4) and s8.shape[2:] == (H // 8, W // 8)
    torch.testing.assert_close(s8, bb(x))


def test_stride_4_single_sensor_ignores_the_other_input():
    model = Gem(GemConfig(fusion="rgb", width_mult=0.25, stride=4)).eval()
    rgb, thermal = _inputs()
    a, b = model(rgb, thermal), model(rgb, torch.zeros_like(thermal))
    torch.testing.assert_close(a.heatmap, b.heatmap)
    with pytest.raises(ValueError, match="stride"):
        GemConfig(stride=2)


def test_input_checks():
    model = Gem(GemConfig(width_mult=0.25))
    rgb, th = _inputs()
    with pytest.raises(GemError):
        model(rgb, th[:, :, :32])
    with pytest.raises(GemError):
        model(rgb[:, :, :60], th[:, :, :60])
    with pytest.raises(ValueError):
        GemConfig(fusion="sum")


def test_reliability_weight_mean_has_no_gradient():
    torch.manual_seed(0)
    rw = ReliabilityWeight(24, k=16)
    s = torch.rand(3, 24, 5, 6, requires_grad=True)
    w = rw(s)
    (g_w,) = torch.autograd.grad(w.sum(), s)
    level = s.detach()[:, :16].mean(dim=(1, 2, 3))
    s2 = s.detach().clone().requires_grad_(True)
    f = nn.functional.softplus(rw.fc(nn.functional.relu(rw.conv(s2)).mean(dim=(2, 3))))[:, 0]
    (g_f,) = torch.autograd.grad((f * level).sum(), s2)
    torch.testing.assert_close(g_w, g_f)          # only f's path carries gradient into s
    torch.testing.assert_close(w, f.detach() * level)


def test_dead_thermal_sensor_zero_weight_and_exact_half_rgb():
    torch.manual_seed(1)
    model = Gem(GemConfig(width_mult=0.25)).eval()

    class Dead(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], model.feat_channels, x.shape[2] // 8, x.shape[3] // 8)

    model.backbone_thermal = Dead()
    feats = model.forward_features(*_inputs())
    assert torch.all(feats["w_thermal"] == 0)
    expected = 0.5 * feats["w_rgb"][:, None, None, None] * feats["feat_rgb"]
    torch.testing.assert_close(feats["fused"], expected)
    share = display_share(feats["w_rgb"], feats["w_thermal"])
    torch.testing.assert_close(share, torch.ones(2))


def test_swapping_identical_streams_swaps_weights():
    torch.manual_seed(2)
    model = Gem(GemConfig(width_mult=0.25, rgb_channels=1, thermal_channels=1)).eval()
    model.backbone_thermal.load_state_dict(model.backbone_rgb.state_dict())
    model.weight_thermal.load_state_dict(model.weight_rgb.state_dict())
    a, b = torch.rand(2, 1, H, W), torch.rand(2, 1, H, W) * 0.3
    f1, f2 = model.forward_features(a, b), model.forward_features(b, a)
    torch.testing.assert_close(f1["w_rgb"], f2["w_thermal"])
    torch.testing.assert_close(f1["w_thermal"], f2["w_rgb"])
    torch.testing.assert_close(f1["fused"], f2["fused"])           # g_sa is symmetric


def test_mask_fusion_is_channel_broadcast_mean():
    torch.manual_seed(3)
    model = Gem(GemConfig(fusion="mask_avg", width_mult=0.25)).eval()
    feats = model.forward_features(*_inputs())
    m_r, m_t = feats["mask_rgb"], feats["mask_thermal"]
    assert m_r.shape == (2, 1, H // 8, W // 8) and bool(((m_r > 0) & (m_r < 1)).all())
    torch.testing.assert_close(feats["fused"], 0.5 * (m_r * feats["feat_rgb"] + m_t * feats["feat_thermal"]))


def test_gumbel_softmax_properties():
    logits = torch.randn(2, 4, 3, 7)
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    a = gumbel_softmax(logits, 1.0, 3, True, g1)
    b = gumbel_softmax(logits, 1.0, 3, True, g2)
    assert a.shape == logits.shape
    torch.testing.assert_close(a, b)                                # seeded: reproducible
    torch.testing.assert_close(a.sum(dim=3), torch.ones(2, 4, 3))   # one distribution per (channel, row)
    warm = gumbel_softmax(logits, 1.0, 3, True, torch.Generator().manual_seed(6))
    cold = gumbel_softmax(logits, 1e-4, 3, True, torch.Generator().manual_seed(6))
    assert cold.max(dim=3).values.min() > 0.99                      # tau -> 0: one-hot ...
    torch.testing.assert_close(cold.argmax(dim=3), warm.argmax(dim=3))  # ... at the same Gumbel-max sample
    assert warm.max(dim=3).values.mean() < cold.max(dim=3).values.mean()
    clean = gumbel_softmax(logits, 1.0, 3, False)
    torch.testing.assert_close(clean, torch.softmax(logits, dim=3))


def test_centernet_round_trip_recovers_boxes():
    boxes = np.array([[10.0, 12.0, 50.0, 40.0], [60.0, 8.0, 72.0, 44.0], [30.0, 30.0, 34.0, 60.0]], np.float32)
    classes = np.array([0, 1, 2])
    t = encode_targets(boxes, classes, (H // 8, W // 8), 8, 3)
    assert t["heatmap"].max() == 1.0 and t["mask"].sum() == 3
    assert np.all((t["heatmap"] >= 0) & (t["heatmap"] <= 1))
    logits = np.where(t["heatmap"] == 1.0, 10.0, -10.0 + 5.0 * t["heatmap"]).astype(np.float32)
    got, scores, cls = decode(logits, t["size"], t["offset"], 8, score_threshold=0.5)
    order = np.argsort(cls)
    np.testing.assert_allclose(got[order], boxes, atol=1e-4)
    np.testing.assert_array_equal(cls[order], classes)


def test_centernet_round_trip_at_stride_4():
    boxes = np.array([[10.0, 12.0, 20.0, 40.0], [61.0, 8.0, 67.0, 22.0]], np.float32)   # a 6 px wide box
    t = encode_targets(boxes, np.array([1, 2]), (H // 4, W // 4), 4, 3)
    logits = np.where(t["heatmap"] == 1.0, 10.0, -10.0).astype(np.float32)
    got, _, cls = decode(logits, t["size"], t["offset"], 4, score_threshold=0.5)
    np.testing.assert_allclose(got[np.argsort(cls)], boxes, atol=1e-4)


def test_focal_loss_prefers_correct_peaks_and_centernet_terms():
    t = encode_targets(np.array([[8.0, 8.0, 40.0, 40.0]], np.float32), np.array([1]), (8, 12), 8, 3)
    target = {k: torch.from_numpy(v)[None] for k, v in t.items()}
    good = torch.from_numpy(np.where(t["heatmap"] == 1, 8.0, -8.0)).float()[None]
    bad = -good
    assert focal_loss(good, target["heatmap"]) < 0.01 < focal_loss(bad, target["heatmap"])
    total, terms = centernet_loss(good, target["size"], target["offset"], target)
    assert terms["size_l1"] == 0.0 and terms["offset_l1"] == 0.0
    assert total.item() == pytest.approx(terms["focal"], rel=1e-6)


def test_score_entropy():
    e = score_entropy(np.array([0.5, 0.999999, 1e-7]))
    assert e[0] == pytest.approx(np.log(2)) and e[1] < 1e-4 and e[2] < 1e-4


@pytest.mark.parametrize("kind", ["variational", "mc_dropout"])
def test_sampled_head_parts_at_the_peaks_equal_the_split_of_every_sample(kind):
    """The deterministic weights in the mean convs give the deterministic maps (the variational heat map shrunk
    towards 0 by its std, the Gaussian predictive); the parts that ``peak_parts`` forms at a few cells equal the
    split of the head's samples evaluated in every cell with the same noise; a null noise has no epistemic part."""
    from glassbox.vision.gem import head_noise_dims, peak_parts
    from glassbox.vnn import bernoulli_split, gaussian_split, probit_logit
    torch.manual_seed(0)
    det = Gem(GemConfig(width_mult=0.25)).eval()
    model = Gem(GemConfig(width_mult=0.25, head=kind, head_samples=4)).eval()
    model.load_state_dict(model.variational_state(det.state_dict()))
    feats = det.forward_features(*_inputs())
    # an untrained GEM's neck is ~0: a random one makes the samples differ
    feats["neck"] = torch.randn(feats["neck"].shape, generator=torch.Generator().manual_seed(2))
    noise = model.draw_noise(4, torch.Generator().manual_seed(1))
    d = sum(head_noise_dims(model.cfg))
    null = torch.zeros(4, d) if kind == "variational" else torch.ones(4, d)
    k, ys, xs = np.array([0, 1, 2, 1]), np.array([0, 3, 7, 5]), np.array([0, 5, 11, 2])
    with torch.no_grad():
        a, b = det.forward_head(feats), model.forward_head({**feats, "head_noise": null})
        for f in ("size", "offset", "w_rgb", "w_thermal"):
            torch.testing.assert_close(getattr(b, f), getattr(a, f), atol=1e-5, rtol=1e-5)
        if kind == "variational":
            torch.testing.assert_close(b.heatmap, probit_logit(a.heatmap, b.heatmap_std), atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(b.heatmap, a.heatmap, atol=1e-5, rtol=1e-5)
        zero = peak_parts(model.cfg, {f: v[1].numpy() for f, v in b._asdict().items()}, k, ys, xs, null.numpy())
        assert np.abs(zero["score_epistemic"]).max() < 1e-6 and zero["box_var_epistemic"].max() < 1e-10
        s = model.head_samples({**feats, "head_noise": noise})
        _, p_ale, p_epi = bernoulli_split(torch.sigmoid(s["heat"]))
        _, v_ale, v_epi = gaussian_split(s["box"], s["box_log_var"])
        out = {f: v[1].numpy() for f, v in model.forward_head({**feats, "head_noise": noise})._asdict().items()}
        parts = peak_parts(model.cfg, out, k, ys, xs, noise.numpy())
    for name, full in (("score_aleatoric", p_ale[1][k, ys, xs]), ("score_epistemic", p_epi[1][k, ys, xs]),
                       ("box_var_aleatoric", v_ale[1][:, ys, xs]), ("box_var_epistemic", v_epi[1][:, ys, xs])):
        np.testing.assert_allclose(parts[name], full.numpy(), rtol=1e-4, atol=1e-7)
    assert parts["score_epistemic"].max() > 0
