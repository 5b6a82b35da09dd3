"""MultiBox loss: exact values on hand-made cases, hard-negative mining, zero positives, distillation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hrank_ssd.train.losses import MultiBoxLoss, hard_negative_mask


def _case():
    """One image, 10 priors, 3 classes; priors 0 and 1 positive, background logits set by hand."""
    labels = torch.tensor([[1, 2, 0, 0, 0, 0, 0, 0, 0, 0]])
    conf = torch.zeros(1, 10, 3)
    # background logit low -> high background loss: negatives 7, 3, 5, 9, 2 ... in that order
    bg = torch.tensor([0.0, 0.0, 1.0, -2.0, 2.0, -1.0, 3.0, -3.0, 2.5, -0.5])
    conf[0, :, 0] = bg
    conf[0, :, 1] = torch.linspace(-1, 1, 10)
    loc = torch.arange(40, dtype=torch.float32).reshape(1, 10, 4) / 40
    gt = torch.zeros(1, 10, 4)
    gt[0, 0] = torch.tensor([0.5, 0.0, 3.0, 0.0])
    return conf, loc, labels, gt


def test_mining_picks_the_highest_background_losses_3_to_1():
    conf, _, labels, _ = _case()
    bg_loss = -F.log_softmax(conf, dim=2)[..., 0]
    mask = hard_negative_mask(bg_loss, labels, 3)
    # 2 positives -> 6 negatives: the six highest background losses among priors 2..9
    neg = sorted(range(2, 10), key=lambda i: -float(bg_loss[0, i]))[:6]
    assert mask[0].nonzero().flatten().tolist() == sorted([0, 1] + neg)
    assert int(mask.sum()) == 8


def test_loss_values_match_the_definition():
    conf, loc, labels, gt = _case()
    reg, cls, _ = MultiBoxLoss()(conf, loc, labels, gt)
    bg_loss = -F.log_softmax(conf, dim=2)[..., 0]
    neg = sorted(range(2, 10), key=lambda i: -float(bg_loss[0, i]))[:6]
    idx = torch.tensor([0, 1] + neg)
    want_cls = F.cross_entropy(conf[0, idx], labels[0, idx], reduction="sum") / 2
    want_reg = F.smooth_l1_loss(loc[0, :2], gt[0, :2], reduction="sum") / 2
    assert float(cls) == pytest.approx(float(want_cls), rel=1e-6)
    assert float(reg) == pytest.approx(float(want_reg), rel=1e-6)
    # smooth L1 by hand for prior 0 and 1 (|d| < 1 -> 0.5 d^2, else |d| - 0.5)
    d = (loc[0, :2] - gt[0, :2]).flatten().tolist()
    by_hand = sum(0.5 * v * v if abs(v) < 1 else abs(v) - 0.5 for v in d) / 2
    assert float(reg) == pytest.approx(by_hand, rel=1e-6)


def test_gradient_flows_only_to_mined_and_positive_priors():
    conf, loc, labels, gt = _case()
    conf.requires_grad_(True)
    loc.requires_grad_(True)
    reg, cls, _ = MultiBoxLoss()(conf, loc, labels, gt)
    (reg + cls).backward()
    touched = conf.grad[0].abs().sum(1) > 0
    bg_loss = -F.log_softmax(conf.detach(), dim=2)[..., 0]
    assert touched.tolist() == hard_negative_mask(bg_loss, labels, 3)[0].tolist()
    assert (loc.grad[0, 2:] == 0).all() and loc.grad[0, :2].abs().sum() > 0


def test_mining_is_per_image_and_excludes_positives():
    labels = torch.tensor([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    bg_loss = torch.tensor([[9.0, 1, 2, 3, 4, 5], [9.0, 8, 7, 6, 5, 4]])
    mask = hard_negative_mask(bg_loss, labels, 3)
    assert mask[0].tolist() == [True, False, False, True, True, True]
    assert not mask[1].any()  # no positives in image 2 -> no negatives either


def test_zero_positives_is_finite_and_zero():
    conf = torch.randn(2, 50, 4, requires_grad=True)
    loc = torch.randn(2, 50, 4, requires_grad=True)
    reg, cls, _ = MultiBoxLoss()(conf, loc, torch.zeros(2, 50, dtype=torch.long), torch.zeros(2, 50, 4))
    assert math.isfinite(float(reg.detach())) and math.isfinite(float(cls.detach()))
    assert float(reg.detach()) == 0 and float(cls.detach()) == 0
    (reg + cls).backward()
    assert torch.isfinite(conf.grad).all()


def test_num_pos_override_rescales():
    conf, loc, labels, gt = _case()
    loss = MultiBoxLoss()
    a = loss(conf, loc, labels, gt)
    b = loss(conf, loc, labels, gt, num_pos=4.0)
    assert float(b.classification) == pytest.approx(float(a.classification) / 2, rel=1e-6)
    assert float(b.regression) == pytest.approx(float(a.regression) / 2, rel=1e-6)


def test_distillation_term():
    conf, loc, labels, gt = _case()
    loss = MultiBoxLoss(distill_T=2.0)
    same = loss(conf, loc, labels, gt, teacher_confidence=conf.clone())
    assert float(same.distillation) == pytest.approx(0.0, abs=1e-6)
    teacher = torch.randn_like(conf)
    parts = loss(conf, loc, labels, gt, teacher_confidence=teacher)
    bg_loss = -F.log_softmax(conf, dim=2)[..., 0]
    mask = hard_negative_mask(bg_loss, labels, 3)
    q = F.softmax(teacher[mask] / 2, -1)
    want = (q * (q.log() - F.log_softmax(conf[mask] / 2, -1))).sum() * 4 / 2
    assert float(parts.distillation) == pytest.approx(float(want), rel=1e-5)
    assert float(parts.distillation) > 0
    # the MultiBox terms do not change with a teacher
    assert float(parts.classification) == pytest.approx(float(same.classification))
