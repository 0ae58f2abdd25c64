"""BiSeNet: shapes for both context paths, auxiliary heads, hinge loss values and gradients, CE switch."""
import pytest
import torch

from glassbox.heads import DenseLogits
from glassbox.vision import build_model
from glassbox.vision.bisenet import BiSeNet, BiSeNetConfig, BiSeNetError
from glassbox.vision.hinge import SegmentationLoss, pixel_cross_entropy, pixel_entropy, pixel_hinge_loss


@pytest.mark.parametrize("cfg", [BiSeNetConfig(), BiSeNetConfig(context="resnet18", num_classes=9,
                                                                 resnet_widths=(16, 32, 64, 64))])
def test_forward_shapes_and_features(cfg):
    model = BiSeNet(cfg).eval()
    x = torch.rand(2, 3, 64, 96)
    feats = model.forward_features(x)
    assert feats["spatial"].shape[2:] == (8, 12) and feats["fused"].shape[2:] == (8, 12)
    assert feats["context5"].shape[2:] == (2, 3)
    head = model(x)
    assert isinstance(head, DenseLogits)
    logits = head.logits
    assert logits.shape == (2, cfg.num_classes, 64, 96) and torch.isfinite(logits).all()
    aux = model.forward_aux(feats)
    assert [a.shape for a in aux] == [logits.shape, logits.shape]


def test_vgg_context_has_five_blocks_of_two_convs():
    model = BiSeNet(BiSeNetConfig())
    convs = [m for m in model.context.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.context.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 10 and len(pools) == 5


def test_bad_sizes_raise():
    with pytest.raises(BiSeNetError):
        BiSeNet()(torch.rand(1, 3, 40, 64))
    with pytest.raises(ValueError):
        BiSeNetConfig(context="vgg19")


def _pixels(pairs):
    """(y_c, y_other) per pixel for class 0 as the correct class -> logits (1, 2, 1, n), target zeros."""
    logits = torch.tensor([[list(p) for p in pairs]], dtype=torch.float32).permute(0, 2, 1)[..., None, :]
    logits = logits.reshape(1, 2, 1, len(pairs))
    return logits, torch.zeros(1, 1, len(pairs), dtype=torch.int64)


@pytest.mark.parametrize("pair,expected", [((0, 0), 2.0), ((2, -2), 0.0), ((0.5, 0.5), 2.0), ((1, -1), 0.0),
                                           ((0.25, -3.0), 0.75)])
def test_hinge_hand_values(pair, expected):
    logits, target = _pixels([pair])
    assert pixel_hinge_loss(logits, target).item() == pytest.approx(expected)


def test_hinge_gradients_mean_and_ignore():
    logits, target = _pixels([(0.0, 0.0), (2.0, -2.0), (0.5, 3.0)])
    logits.requires_grad_(True)
    loss = pixel_hinge_loss(logits, target)
    assert loss.item() == pytest.approx((2.0 + 0.0 + (0.5 + 4.0)) / 3)
    loss.backward()
    g = logits.grad[0, :, 0] * 3                                     # undo the mean over 3 pixels
    torch.testing.assert_close(g[0], torch.tensor([-1.0, 0.0, -1.0]))  # d/dy_c: -1 where y_c < 1
    torch.testing.assert_close(g[1], torch.tensor([1.0, 0.0, 1.0]))    # d/dy_other: +1 where y_other > -1
    target[0, 0, 2] = 255
    assert pixel_hinge_loss(logits, target).item() == pytest.approx(1.0)
    target[:] = 255
    assert pixel_hinge_loss(logits, target).item() == 0.0


def test_dense_losses_are_resolution_invariant():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    big_l = logits.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    big_t = target.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    for fn in (pixel_hinge_loss, pixel_cross_entropy):
        assert fn(big_l, big_t).item() == pytest.approx(fn(logits, target).item(), rel=1e-6)


def test_segmentation_loss_switch_and_aux_terms():
    torch.manual_seed(1)
    logits, aux = torch.randn(2, 2, 8, 8), [torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)]
    target = torch.randint(0, 2, (2, 8, 8))
    total, terms = SegmentationLoss("hinge", aux_weight=0.5)(logits, aux, target)
    expected = pixel_hinge_loss(logits, target) + 0.5 * sum(pixel_cross_entropy(a, target) for a in aux)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) == {"hinge", "aux1_ce", "aux2_ce"}
    total, terms = SegmentationLoss("ce", aux_weight=0.0)(logits, aux, target)
    assert total.item() == pytest.approx(pixel_cross_entropy(logits, target).item(), rel=1e-6)
    with pytest.raises(ValueError):
        SegmentationLoss("dice")


def test_ohem_keeps_the_hard_pixels_and_at_least_the_minimum_share():
    from glassbox.vision.hinge import pixel_ohem_cross_entropy

    # 2 classes, 16 pixels; p(correct) = sigmoid(margin): pixels with margins -2, 0 are hard (p < 0.7)
    margins = torch.tensor([-2.0, 0.0] + [3.0] * 14)
    logits = torch.stack([torch.zeros(16), margins]).reshape(1, 2, 4, 4)
    target = torch.ones(1, 4, 4, dtype=torch.long)
    ce = torch.nn.functional.softplus(-margins)                             # -log sigmoid(margin)
    got = pixel_ohem_cross_entropy(logits, target)
    assert got.item() == pytest.approx(ce[:2].mean().item(), rel=1e-6)
    # no hard pixel: the hardest 1/16 (at least one) count; min_fraction 1/2: the 8 hardest
    easy = torch.stack([torch.zeros(16), torch.linspace(3.0, 6.0, 16)]).reshape(1, 2, 4, 4)
    ce_easy = torch.nn.functional.softplus(-torch.linspace(3.0, 6.0, 16))
    assert pixel_ohem_cross_entropy(easy, target).item() == pytest.approx(ce_easy[0].item(), rel=1e-6)
    assert pixel_ohem_cross_entropy(easy, target, min_fraction=0.5).item() == \
        pytest.approx(ce_easy[:8].mean().item(), rel=1e-6)
    # ignored pixels never count; all ignored: 0
    target_ign = target.clone()
    target_ign[0, 0, 0] = 255
    assert pixel_ohem_cross_entropy(logits, target_ign).item() == pytest.approx(ce[1].item(), rel=1e-6)
    assert pixel_ohem_cross_entropy(logits, torch.full_like(target, 255)).item() == 0.0
    total, terms = SegmentationLoss("ohem", aux_weight=0.0)(logits, [], target)
    assert set(terms) == {"ohem"} and total.item() == pytest.approx(got.item())


def test_pixel_entropy_bounds():
    k = 4
    uniform = torch.zeros(1, k, 2, 2)
    torch.testing.assert_close(pixel_entropy(uniform), torch.full((1, 2, 2), float(torch.log(torch.tensor(4.0)))))
    peaked = torch.zeros(1, k, 2, 2)
    peaked[:, 0] = 50.0
    assert pixel_entropy(peaked).max() < 1e-12 + 1e-15 or pixel_entropy(peaked).max() < 1e-10


def test_registry_builds_every_model():
    for name, cfg in (("refiner", None), ("bisenet", {"num_classes": 3}), ("gem", {"fusion": "mask_avg"})):
        assert isinstance(build_model(name, cfg), torch.nn.Module)
    with pytest.raises(KeyError):
        build_model("yolo")


def test_detail_step_starts_as_the_stride8_model_and_then_resolves_thin_structures():
    """The stride-4 detail step adds only ``DETAIL_MODULES``; with a stride-8 model's weights loaded its residual
    is exactly zero, so the logits are that model's up to the order of the bilinear upsamplings; a thin vertical
    bar (a pole, 2 px wide) that the stride-8 head blurs away is learnt by the stride-4 head in a few steps."""
    torch.manual_seed(0)
    m8 = BiSeNet(BiSeNetConfig(num_classes=2)).eval()
    m4 = BiSeNet(BiSeNetConfig(num_classes=2, output_stride=4)).eval()
    missing, unexpected = m4.load_state_dict(m8.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(BiSeNet.DETAIL_MODULES) for k in missing)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = m4.forward_features(x)
        assert feats["fused4"].shape[2:] == (16, 16)
        assert torch.equal(m4.detail(m4.spatial[:2](x)), torch.zeros(1, 64, 16, 16))
        assert (m4(x).logits.argmax(1) == m8(x).logits.argmax(1)).float().mean() > 0.9
    with pytest.raises(ValueError, match="output_stride"):
        BiSeNetConfig(output_stride=2)


def test_detail_step_fits_a_thin_bar_the_stride8_head_cannot():
    x = torch.rand(4, 3, 64, 64) * 0.2
    y = torch.zeros(4, 64, 64, dtype=torch.long)
    for b in range(4):
        c = 9 + 13 * b                                  # bars at column offsets that straddle 1/8 cells
        x[b, :, :, c:c + 2] += 0.8
        y[b, :, c:c + 2] = 1
    ious = {}
    for stride in (8, 4):
        torch.manual_seed(0)
        model = BiSeNet(BiSeNetConfig(num_classes=2, output_stride=stride))
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        for _ in range(150):
            loss = pixel_cross_entropy(model(x).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = model.eval()(x).logits.argmax(1) == 1
        ious[stride] = float((pred & (y == 1)).sum() / (pred | (y == 1)).sum())
    assert ious[4] > ious[8] + 0.1, ious
