"""RID, Redundant Information Distillation (paper Algorithm 1, eqs. 11 and 13): per distilled layer a teacher filter
f_t with a classification head g_t, a student filter f_s and per-channel weights sigma, trained in alternating phases.
Why sums as written or the code's means: book/reproducibility.md, "Sums or means".
"""

import torch
import torch.nn as nn

from ridrepro.distill.base import Distiller, ce, channel_param, spread, variance


@torch.no_grad()
def filter_stats(ft, head_logits, y, head_ce=None):
    """Per layer: the fraction of positive teacher-filter outputs (the head's ReLU passes only these), and the
    head's CE (head_ce: the loss's own, when it computed them) and accuracy."""
    head_ce = head_ce if head_ce is not None else [ce(h, y) for h in head_logits]
    return {"filter_positive": torch.stack([(f > 0).float().mean() for f in ft]),
            "head_ce": torch.stack([c.detach() for c in head_ce]),
            "head_acc": torch.stack([(h.argmax(1) == y).float().mean() for h in head_logits])}


def teacher_filter(ct, cs):
    """f_t: conv1x1(Ct->Ct) BN ReLU conv1x1(Ct->Cs), no bias."""
    return nn.Sequential(nn.Conv2d(ct, ct, 1, bias=False), nn.BatchNorm2d(ct), nn.ReLU(),
                         nn.Conv2d(ct, cs, 1, bias=False))


def student_filter(cs):
    """f_s: conv1x1(Cs->2Cs) BN ReLU conv1x1(2Cs->Cs), no bias."""
    return nn.Sequential(nn.Conv2d(cs, 2 * cs, 1, bias=False), nn.BatchNorm2d(2 * cs), nn.ReLU(),
                         nn.Conv2d(2 * cs, cs, 1, bias=False))


def head(cs, size, num_classes=10):
    """g: Flatten ReLU Linear(Cs*H*W -> classes)."""
    return nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(cs * size * size, num_classes))


def rid_filter_term(ft, fs, sigma, reduction="mean"):
    """Eq. 11's distillation term for one layer: mean_{b,c,h,w}(V^2 / sigma_c), or as written
    ("sum"): sum_{c,h,w} E_b[V^2 / sigma_c]."""
    e = (fs - ft) ** 2 / sigma
    return e.mean() if reduction == "mean" else e.sum() / len(e)


def rid_student_term(ft, fs, sigma, reduction="mean"):
    """Eq. 13's distillation term for one layer: mean_{b,c,h,w}(sigma_c^2 + V^2 / sigma_c), or as
    written ("sum"): ||sigma||^2 + sum_{c,h,w} E_b[V^2 / sigma_c]."""
    if reduction == "mean":
        return torch.mean(sigma ** 2 + (fs - ft) ** 2 / sigma)
    return (sigma ** 2).sum() + rid_filter_term(ft, fs, sigma, "sum")


class RID(Distiller):
    """sigma_c = softplus(alpha_c) + 1e-3 and V = f_t(T_k) - f_s(S_k) per layer k; alternation is per epoch:

      teacher-filter phase (eq. 11), only f_t and g_t step:
          sum_k CE(Y, g_t(f_t(T_k)))  [+ sum_k mean_{b,c,h,w}( V^2 / sigma_c )  unless this is warm-up]
      student phase (eq. 13), the student, f_s and sigma step:
          lambda1 CE(Y, student(x)) + lambda2 sum_k mean_{b,c,h,w}( sigma_c^2 + V^2 / sigma_c )

    `reduction`: "mean" (the code; paper-code) or "sum" (eqs. 11 and 13 as written; paper-text).
    Schedule: `warmup` epochs of CE-only filter training, then `cycles` cycles of q epochs whose first r*q epochs are
    the filter phase; the distillation term joins the filter loss from cycle `filter_distil_from_cycle` on (1 in the
    code, whose first cycle's filter epochs are its warm-up; 0 for Algorithm 1). `student_forward_in_warmup`: the
    student runs forward in train mode in those epochs, its output weighted 0 (divergence 11).
    """

    def __init__(self, student, teacher, lam1=1.0, lam2=10.0, warmup=0, cycles=10, q=30, r=0.25,
                 filter_distil_from_cycle=1, student_forward_in_warmup=False, reduction="mean", num_classes=10):
        super().__init__(student, teacher)
        if cycles < 1 or q < 1 or not 0 < r < 1:
            raise ValueError(f"RID needs cycles >= 1, q >= 1 and 0 < r < 1, got {cycles}, {q}, {r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"RID reduction must be 'mean' or 'sum', got {reduction!r}")
        self.lam1, self.lam2 = lam1, lam2
        self.grad_weights = {"ce": lam1, "rid": lam2}
        self.student_forward_in_warmup, self.reduction = student_forward_in_warmup, reduction
        self.warmup, self.cycles, self.q, self.r = warmup, cycles, q, r
        self.filter_distil_from_cycle = filter_distil_from_cycle
        # Any teacher/student pair with matching tap sizes works: each exposes .channels and .spatial per tap.
        if tuple(teacher.spatial) != tuple(student.spatial):
            raise ValueError(f"RID pairs taps of equal size; teacher {teacher.spatial}, student {student.spatial}")
        pairs = list(zip(teacher.channels, student.channels, teacher.spatial))
        self.f_t = nn.ModuleList(teacher_filter(ct, cs) for ct, cs, _ in pairs)
        self.g_t = nn.ModuleList(head(cs, n, num_classes) for _, cs, n in pairs)
        self.f_s = nn.ModuleList(student_filter(cs) for _, cs, _ in pairs)
        self.alpha = nn.ParameterList(channel_param(cs) for _, cs, _ in pairs)

    def param_groups(self):
        return {"filter": [*self.f_t.parameters(), *self.g_t.parameters()],
                "student": [*self.student.parameters(), *self.f_s.parameters(), *self.alpha]}

    def cycle(self, epoch):
        return None if epoch < self.warmup else (epoch - self.warmup) // self.q

    def phase(self, epoch):
        if epoch < self.warmup:
            return "warmup"
        # The code's test `epoch % q < r*q` (r*q may be fractional: 7.5 -> epochs 0..7 of each cycle).
        if (epoch - self.warmup) % self.q < self.r * self.q:
            return "filter" if self.cycle(epoch) >= self.filter_distil_from_cycle else "warmup"
        return "student"

    def phase_groups(self, phase):
        return ("student",) if phase == "student" else ("filter",)

    def sigmas(self):
        return [variance(a) for a in self.alpha]

    def loss(self, x, y, t_taps, phase):
        if phase == "student":
            return self._student_loss(x, y, t_taps)
        ft = [f(t) for f, t in zip(self.f_t, t_taps)]
        head_logits = [g(f) for g, f in zip(self.g_t, ft)]
        head_ce = [ce(h, y) for h in head_logits]
        ce_loss = sum(head_ce)
        self._stats = filter_stats(ft, head_logits, y, head_ce)
        terms = {"filter_ce": ce_loss}
        if phase == "warmup" and not self.student_forward_in_warmup:  # its output would be multiplied by 0
            return ce_loss, terms, None
        with torch.no_grad():  # only f_t, g_t learn in this phase; the student still runs in train mode
            logits, s_taps = self.student(x, taps=True)
            fs = [f(s) for f, s in zip(self.f_s, s_taps)]
            sig = self.sigmas()
        if phase == "warmup":  # divergence 11: the forward ran for its batch-norm side effect alone
            return ce_loss, terms, logits
        distil = sum(rid_filter_term(a, b, s, self.reduction) for a, b, s in zip(ft, fs, sig))
        terms["filter_distil"] = distil
        return ce_loss + distil, terms, logits

    def _student_loss(self, x, y, t_taps):
        with torch.no_grad():  # f_t is fixed in this phase (its BN still tracks statistics, as in the code)
            ft = [f(t) for f, t in zip(self.f_t, t_taps)]
            self._stats = filter_stats(ft, [g(f) for g, f in zip(self.g_t, ft)], y)
        logits, s_taps = self.student(x, taps=True)
        fs = [f(s) for f, s in zip(self.f_s, s_taps)]
        ce_loss = ce(logits, y)
        distil = sum(rid_student_term(a, b, s, self.reduction) for a, b, s in zip(ft, fs, self.sigmas()))
        loss = self.lam1 * ce_loss + self.lam2 * distil
        return loss, {"ce": ce_loss, "rid": distil}, logits

    @torch.no_grad()
    def epoch_stats(self):
        return {f"sigma_{k}": v for k, v in spread(self.sigmas()).items()}
