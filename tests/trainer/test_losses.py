"""Distillation losses and the weighted sum: closed forms, invariants, gradient flow."""
import math

import pytest
import torch
import torch.nn.functional as F

from glassbox_trainer.losses import (KDError, KDLoss, MOSAKDError, MOSAKDLoss, SparseDictionary, SRMError, SRMLoss,
                                     WeightedSum, WeightedSumError, dense_samples, kd_loss, knn_soft_labels,
                                     mosakd_loss, srm_terms)
from glassbox_trainer.losses.srm import atoms_for


# ------------------------------------------------------------------------------------------------------ KD
@pytest.mark.parametrize("shape", [(4, 5), (2, 5, 6, 7)])
@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_kd_is_zero_when_student_equals_teacher(shape, mode):
    z = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    assert kd_loss(z, z.clone(), 4.0, mode=mode).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_is_invariant_to_per_sample_logit_shift():
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    assert kd_loss(z + torch.tensor([[1.0], [-2.0], [5.0]]), z).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_gradients_reach_the_student_only():
    g = torch.Generator().manual_seed(2)
    teacher_net = torch.nn.Linear(6, 3)
    student_net = torch.nn.Linear(6, 3)
    x = torch.randn(8, 6, generator=g)
    loss = kd_loss(student_net(x), teacher_net(x), temperature=2.0)
    loss.backward()
    assert loss.item() > 0
    assert teacher_net.weight.grad is None and teacher_net.bias.grad is None
    assert student_net.weight.grad is not None and student_net.weight.grad.abs().sum() > 0


def test_kd_closed_form_two_classes():
    # p_t = softmax([0, 0]) = (0.5, 0.5); p_s = softmax([log 3, 0] / T) with T = 1 -> (0.75, 0.25)
    s = torch.tensor([[math.log(3.0), 0.0]])
    t = torch.zeros(1, 2)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kd_loss(s, t, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # T^2 scaling: at T = 2 the softened distributions change, the factor 4 multiplies the KL
    ps = torch.softmax(s.double() / 2, 1)[0]
    expected2 = 4 * (0.5 * math.log(0.5 / ps[0].item()) + 0.5 * math.log(0.5 / ps[1].item()))
    assert kd_loss(s, t, temperature=2.0).item() == pytest.approx(expected2, rel=1e-5)


def test_dense_kd_is_per_pixel_average_and_resolution_invariant():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 4, 5, 6, generator=g)
    t = torch.randn(2, 4, 5, 6, generator=g)
    per_pixel = kd_loss(s.permute(0, 2, 3, 1).reshape(-1, 4), t.permute(0, 2, 3, 1).reshape(-1, 4))
    assert kd_loss(s, t).item() == pytest.approx(per_pixel.item(), rel=1e-6)
    up = lambda z: z.repeat_interleave(2, 2).repeat_interleave(2, 3)      # noqa: E731  nearest x2 upsampling
    assert kd_loss(up(s), up(t)).item() == pytest.approx(kd_loss(s, t).item(), rel=1e-6)


def test_dense_kd_averages_over_valid_pixels_only():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(1, 3, 4, 4, generator=g)
    t = torch.randn(1, 3, 4, 4, generator=g)
    valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    valid[0, :2] = True
    s2 = s.clone()
    s2[:, :, 2:] = 100.0                                                       # garbage on invalid pixels
    assert kd_loss(s2, t, valid=valid).item() == pytest.approx(kd_loss(s[:, :, :2], t[:, :, :2]).item(), rel=1e-6)


def test_kd_rejects_mismatched_shapes():
    with pytest.raises(KDError, match="differ"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(KDError, match="temperature"):
        KDLoss(temperature=0.0)(torch.zeros(2, 3), torch.zeros(2, 3))


# ----------------------------------------------------------------------------------------------------- SRM
def test_sparse_code_has_exactly_k_nonzeros_in_unit_interval_and_consistent_argmax():
    d = SparseDictionary(channels=6, atoms=12, k=3, seed=0)
    x = torch.randn(2, 6, 4, 5, generator=torch.Generator().manual_seed(5))
    code = d.sparse_code(x)
    assert code.shape == (2, 4, 5, 12)
    assert ((code > 0).sum(-1) == 3).all()
    assert ((code >= 0) & (code < 1)).all()
    assert torch.equal(code.argmax(-1), d.similarity(x).argmax(-1))


def test_atoms_and_k_follow_mu_and_sparsity():
    assert atoms_for(64, 2.0, 0.02) == (128, 2)
    assert atoms_for(10, 1.5, 0.01) == (15, 1)                      # k never below 1


def test_srm_dictionary_learning_reduces_reconstruction_error():
    g = torch.Generator().manual_seed(6)
    feats = {"f": torch.relu(torch.randn(8, 8, 4, 4, generator=g))}
    srm = SRMLoss([("f", "f")], [8], [8], mu=2.0, sparsity=0.2, seed=0)
    opt = torch.optim.Adam(srm.teacher_dicts.parameters(), lr=0.05)
    first = srm.dictionary_loss(feats).item()
    for _ in range(40):
        loss = srm.dictionary_loss(feats)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert srm.dictionary_loss(feats).item() < 0.5 * first


def test_srm_gradients_reach_student_and_its_dictionary_not_teacher_or_later_layers():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 6, 6, generator=g)
    teacher = torch.nn.Conv2d(3, 10, 3, padding=1)
    student_body = torch.nn.Conv2d(3, 4, 3, padding=1)
    student_head = torch.nn.Conv2d(4, 2, 1)
    fs = student_body(x)
    _ = student_head(fs)
    ft = teacher(x)
    srm = SRMLoss.from_features({"a": fs}, {"a": ft}, mu=2.0, sparsity=0.1)
    assert srm.student_dicts[0].atoms.shape == (4, 20) and srm.teacher_dicts[0].atoms.shape == (10, 20)
    loss = srm({"a": fs}, {"a": ft})
    loss.backward()
    assert student_body.weight.grad.abs().sum() > 0
    assert srm.student_dicts[0].atoms.grad.abs().sum() > 0
    assert teacher.weight.grad is None
    assert srm.teacher_dicts[0].atoms.grad is None
    assert student_head.weight.grad is None                              # layers after the tap: no gradient


def test_srm_image_term_gradient_vanishes_at_the_target():
    # BCE has a non-zero minimum: test the gradient, not the value
    code = torch.zeros(1, 2, 2, 4)
    code[..., 1] = 0.6
    pred = code.clone().requires_grad_(True)
    _, image = srm_terms(pred, code)
    image.backward()
    pooled_grad = pred.grad.mean(dim=(1, 2))
    assert image.item() > 0
    assert pooled_grad.abs().max().item() < 1e-6


def test_srm_rejects_spatial_mismatch_and_missing_layer():
    with pytest.raises(SRMError, match="spatial"):
        SRMLoss.from_features({"a": torch.zeros(1, 3, 4, 4)}, {"a": torch.zeros(1, 5, 2, 2)}, pairs=[("a", "a")])
    with pytest.raises(SRMError, match="no feature"):
        SRMLoss.from_features({"a": torch.zeros(1, 3, 4, 4)}, {"b": torch.zeros(1, 5, 4, 4)}, pairs=[("a", "a")])


# -------------------------------------------------------------------------------------------------- MOSAKD
def test_soft_labels_are_vote_shares():
    g = torch.Generator().manual_seed(8)
    f = torch.randn(20, 5, generator=g)
    y = torch.randint(0, 3, (20,), generator=g)
    s = knn_soft_labels(f, y, 3, k=4)
    assert torch.allclose(s.sum(1), torch.ones(20))
    assert torch.equal(s * 4, (s * 4).round())
    # all samples of one class -> one-hot of that class
    assert torch.equal(knn_soft_labels(f, torch.full((20,), 2), 3, k=4), F.one_hot(torch.full((20,), 2), 3).float())
    # k = 1 with self excluded: the nearest other sample's label
    d = torch.cdist(f, f)
    d.fill_diagonal_(float("inf"))
    assert torch.equal(knn_soft_labels(f, y, 3, k=1), F.one_hot(y[d.argmin(1)], 3).float())


def test_mosakd_zero_when_prediction_equals_soft_label_and_gradient_only_through_logits():
    g = torch.Generator().manual_seed(9)
    f = torch.randn(10, 4, generator=g, requires_grad=True)
    y = torch.zeros(10, dtype=torch.long)                                 # soft labels are e_0
    logits = torch.tensor([[30.0, 0.0, 0.0]]).repeat(10, 1).requires_grad_(True)
    loss = mosakd_loss(f, logits, y, k=3)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    logits2 = torch.randn(10, 3, generator=g, requires_grad=True)
    mosakd_loss(f, logits2, y, k=3).backward()
    assert f.grad is None and logits2.grad.abs().sum() > 0


def test_mosakd_guards_k_and_counts_one_term_per_layer():
    with pytest.raises(MOSAKDError, match="k must be"):
        knn_soft_labels(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 2, k=4)
    g = torch.Generator().manual_seed(10)
    feats = {"a": torch.randn(12, 5, generator=g), "b": torch.randn(12, 7, generator=g)}
    logits = torch.randn(12, 3, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    gen = torch.Generator().manual_seed(0)
    both = MOSAKDLoss(["a", "b"], k=3)(feats, logits, y, gen)
    parts = mosakd_loss(feats["a"], logits, y, 3) + mosakd_loss(feats["b"], logits, y, 3)
    assert both.item() == pytest.approx(parts.item(), rel=1e-6)


def test_dense_samples_align_labels_and_drop_ignored_pixels():
    fmap = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    logits = torch.zeros(2, 4, 4, 4)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[:, :2, :2] = 255                                              # top-left feature pixel is ignored
    f, lg, y = dense_samples(fmap, logits, labels, max_samples=100, generator=torch.Generator().manual_seed(0))
    assert f.shape == (6, 3) and lg.shape == (6, 4) and y.shape == (6,)
    kept = {tuple(v.tolist()) for v in f}
    assert tuple(fmap[0, :, 0, 0].tolist()) not in kept and tuple(fmap[0, :, 1, 1].tolist()) in kept
    f2, _, _ = dense_samples(fmap, logits, labels, max_samples=3, generator=torch.Generator().manual_seed(0))
    assert f2.shape == (3, 3)


# ------------------------------------------------------------------------------------------- weighted sum
def test_weighted_sum_values_formula_and_detached_terms():
    ws = WeightedSum({"task": 1.0, "eloss_var": 0.1, "kd": 0.5, "srm": 0.0})
    a = torch.tensor(2.0, requires_grad=True)
    total, terms = ws({"task": a, "eloss_var": torch.tensor(3.0), "kd": torch.tensor(4.0)})
    assert total.item() == pytest.approx(2.0 + 0.3 + 2.0)
    assert terms == pytest.approx({"task": 2.0, "task_weighted": 2.0, "eloss_var": 3.0, "eloss_var_weighted": 0.3,
                                   "kd": 4.0, "kd_weighted": 2.0, "total": 4.3})
    assert all(isinstance(v, float) for v in terms.values())
    total.backward()
    assert a.grad.item() == 1.0
    assert str(ws) == "total = 1*task + 0.1*eloss_var + 0.5*kd"
    assert ws.active == ["task", "eloss_var", "kd"]
    scaled, _ = ws({"task": a, "eloss_var": torch.tensor(3.0), "kd": torch.tensor(4.0)}, scales={"eloss_var": 0.5})
    assert scaled.item() == pytest.approx(4.15)


def test_weighted_sum_rejects_unknown_and_missing_terms():
    ws = WeightedSum({"task": 1.0, "kd": 0.5})
    with pytest.raises(WeightedSumError, match="no weight"):
        ws({"task": torch.tensor(1.0), "kd": torch.tensor(1.0), "srm": torch.tensor(1.0)})
    with pytest.raises(WeightedSumError, match="not given"):
        ws({"task": torch.tensor(1.0)})
