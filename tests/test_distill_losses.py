"""Each loss term against a hand computation on a tiny tensor (plain Python arithmetic)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ridrepro.distill.base import variance
from ridrepro.distill.rid import rid_filter_term, rid_student_term
from ridrepro.distill.ted import ted_term
from ridrepro.distill.vid import vid_term
from ridrepro.distill import RID, TED, VID
from ridrepro.models import WideResNet

# Two channels, one sample, 1x2 pixels: t[c] and s[c] lists.
T = [[1.0, 2.0], [0.0, -1.0]]
S = [[0.5, 2.0], [1.0, 1.0]]
V = [0.5, 2.0]  # per-channel variance / weight


def tensor(rows):
    return torch.tensor(rows, dtype=torch.float64).view(1, 2, 1, 2)


def alpha_for(v):
    """The free parameter whose softplus(alpha) + 1e-3 equals v."""
    return torch.tensor([math.log(math.expm1(x - 1e-3)) for x in v], dtype=torch.float64).view(1, 2, 1, 1)


def test_variance_is_softplus_plus_floor():
    assert variance(torch.tensor(5.0)).item() == pytest.approx(math.log(1 + math.exp(5)) + 1e-3)
    assert variance(alpha_for(V)).flatten().tolist() == pytest.approx(V)


def test_vid_term_by_hand():
    # 0.5 * mean over (c, h, w) of log v_c + (t - mu)^2 / v_c
    items = [math.log(V[c]) + (T[c][i] - S[c][i]) ** 2 / V[c] for c in range(2) for i in range(2)]
    expected = 0.5 * sum(items) / 4
    assert vid_term(tensor(T), tensor(S), alpha_for(V)).item() == pytest.approx(expected, rel=1e-12)


def test_rid_terms_by_hand():
    filt = sum((T[c][i] - S[c][i]) ** 2 / V[c] for c in range(2) for i in range(2)) / 4
    stud = sum(V[c] ** 2 + (T[c][i] - S[c][i]) ** 2 / V[c] for c in range(2) for i in range(2)) / 4
    sigma = variance(alpha_for(V))
    assert rid_filter_term(tensor(T), tensor(S), sigma).item() == pytest.approx(filt, rel=1e-12)
    assert rid_student_term(tensor(T), tensor(S), sigma).item() == pytest.approx(stud, rel=1e-12)
    assert stud == pytest.approx(filt + (0.25 + 4.0) / 2)  # mean of sigma_c^2 over channels added


def test_ted_term_by_hand():
    expected = sum((T[c][i] - S[c][i]) ** 2 for c in range(2) for i in range(2)) / 4
    assert ted_term(tensor(T), tensor(S)).item() == pytest.approx(expected, rel=1e-12)


@pytest.fixture
def nets():
    torch.manual_seed(0)
    return WideResNet(10, 1), WideResNet(10, 2).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 3])


def test_vid_loss_is_ce_plus_lambda_sum_over_layers(nets):
    student, teacher = nets
    d = VID(student, teacher, lam=100.0)
    x, y = batch()
    t_taps = d.teacher_taps(x)
    loss, terms, logits = d.loss(x, y, t_taps, "train")
    s_taps = student(x, taps=True)[1]
    distil = sum(vid_term(t, mu(s), a) for t, s, mu, a in zip(t_taps, s_taps, d.mu, d.alpha))
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert loss.item() == pytest.approx(terms["ce"].item() + 100 * distil.item(), rel=1e-5)
    # alpha = 5 at start: the log-variance part alone is 0.5 * log(softplus(5) + 1e-3) per layer
    assert d.alpha[0].flatten()[0].item() == 5.0


def test_rid_losses_per_phase(nets):
    student, teacher = nets
    d = RID(student, teacher, lam1=1.0, lam2=10.0)
    x, y = batch()
    t_taps = d.teacher_taps(x)
    loss_w, terms_w, logits_w = d.loss(x, y, t_taps, "warmup")
    heads = sum(F.cross_entropy(g(f(t)), y) for f, g, t in zip(d.f_t, d.g_t, t_taps))
    assert logits_w is None and set(terms_w) == {"filter_ce"}
    assert loss_w.item() == pytest.approx(heads.item(), rel=1e-5)
    loss_f, terms_f, _ = d.loss(x, y, t_taps, "filter")
    assert loss_f.item() == pytest.approx(terms_f["filter_ce"].item() + terms_f["filter_distil"].item(), rel=1e-6)
    loss_s, terms_s, _ = d.loss(x, y, t_taps, "student")
    assert loss_s.item() == pytest.approx(terms_s["ce"].item() + 10 * terms_s["rid"].item(), rel=1e-6)
    # at initialisation sigma = softplus(5) + 1e-3 = 5.0077 in every channel, so the sigma^2 part of
    # the student term is 3 layers * 5.0077^2 and the V^2/sigma part is the filter term
    sig2 = 3 * (math.log1p(math.exp(5)) + 1e-3) ** 2
    assert terms_s["rid"].item() == pytest.approx(sig2 + terms_f["filter_distil"].item(), rel=1e-4)


def test_ted_losses_per_stage(nets):
    student, teacher = nets
    d = TED(student, teacher, lam=10.0, stage1_epochs=1)
    x, y = batch()
    t_taps = d.teacher_taps(x)
    s_taps = student(x, taps=True)[1]
    loss1, terms1, _ = d.loss(x, y, t_taps, "stage1")
    ce_t = sum(F.cross_entropy(g(f(t)), y) for f, g, t in zip(d.f_t, d.g_t, t_taps))
    ce_s = sum(F.cross_entropy(g(f(s)), y) for f, g, s in zip(d.f_s, d.g_s, s_taps))
    assert loss1.item() == pytest.approx(ce_t.item() + ce_s.item(), rel=1e-5)
    loss2, terms2, logits = d.loss(x, y, t_taps, "stage2")
    mse = sum(torch.mean((f(t) - fs(s)) ** 2) for f, fs, t, s in zip(d.f_t, d.f_s, t_taps, s_taps))
    assert terms2["ted"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert loss2.item() == pytest.approx(F.cross_entropy(logits, y).item() + 10 * mse.item(), rel=1e-5)
