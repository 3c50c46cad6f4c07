"""TED (Liang et al. 2023) as the paper describes it (Appendix B.2), fine-tuning a trained student.

Stage 1 (eq. 45), networks frozen: task-aware filters with classification heads are trained on both
sides, sum_k CE(Y, g_t(f_t(T_k))) + sum_k CE(Y, g_s(f_s(S_k))).
Stage 2 (eq. 46), heads dropped, f_t frozen: the student and f_s train on
    CE(Y, student(x)) + lambda * sum_k mean_{b,c,h,w}( (f_t(T_k) - f_s(S_k))^2 )
(eq. 46 writes a squared norm; the authors' TED class takes the mean, as here).
Filters and heads have RID's architecture (the authors' TED class reuses RID's filter classes).

The paper-code protocol's "TED" is not this class: it is RID with one cycle (protocols.md, divergence 6).
"""

import torch
import torch.nn as nn

from ridrepro.distill.base import Distiller, ce
from ridrepro.distill.rid import filter_stats, head, student_filter, teacher_filter


def ted_term(ft, fs):
    return torch.mean((ft - fs) ** 2)


class TED(Distiller):
    def __init__(self, student, teacher, lam=10.0, stage1_epochs=30, num_classes=10):
        super().__init__(student, teacher)
        self.lam, self.stage1_epochs = lam, stage1_epochs
        self.grad_weights = {"ce": 1.0, "ted": lam}
        pairs = list(zip(teacher.channels, student.channels, teacher.spatial))
        self.f_t = nn.ModuleList(teacher_filter(ct, cs) for ct, cs, _ in pairs)
        self.g_t = nn.ModuleList(head(cs, n, num_classes) for _, cs, n in pairs)
        self.f_s = nn.ModuleList(student_filter(cs) for _, cs, _ in pairs)
        self.g_s = nn.ModuleList(head(cs, n, num_classes) for _, cs, n in pairs)

    def param_groups(self):
        # f_s belongs to two optimisers, one per stage, as in the authors' TED class.
        return {"t_filter": [*self.f_t.parameters(), *self.g_t.parameters()],
                "s_filter": [*self.f_s.parameters(), *self.g_s.parameters()],
                "student": [*self.student.parameters(), *self.f_s.parameters()]}

    def phase(self, epoch):
        return "stage1" if epoch < self.stage1_epochs else "stage2"

    def phase_groups(self, phase):
        return ("t_filter", "s_filter") if phase == "stage1" else ("student",)

    def loss(self, x, y, t_taps, phase):
        if phase == "stage1":
            with torch.no_grad():  # the student network is frozen in stage 1
                logits, s_taps = self.student(x, taps=True)
            ft = [f(t) for f, t in zip(self.f_t, t_taps)]
            head_logits = [g(f) for g, f in zip(self.g_t, ft)]
            head_ce = [ce(h, y) for h in head_logits]
            self._stats = filter_stats(ft, head_logits, y, head_ce)
            ce_t = sum(head_ce)
            ce_s = sum(ce(g(f(s)), y) for f, g, s in zip(self.f_s, self.g_s, s_taps))
            return ce_t + ce_s, {"t_filter_ce": ce_t, "s_filter_ce": ce_s}, logits
        with torch.no_grad():
            ft = [f(t) for f, t in zip(self.f_t, t_taps)]
        logits, s_taps = self.student(x, taps=True)
        distil = sum(ted_term(a, f(s)) for a, f, s in zip(ft, self.f_s, s_taps))
        ce_loss = ce(logits, y)
        return ce_loss + self.lam * distil, {"ce": ce_loss, "ted": distil}, logits
