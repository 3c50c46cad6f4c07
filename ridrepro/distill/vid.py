"""VID (Ahn et al. 2019; paper Appendix B.1, eq. 44), as the authors coded it.

    L = CE(Y, student(x)) + lambda * sum_k 0.5 * mean_{b,c,h,w}[ log v_c + (T_k - mu_k(S_k))^2 / v_c ]

v_c = softplus(alpha_c) + 1e-3 is a per-channel variance of the teacher tap. Eq. 44 sums over c,h,w;
the code takes the mean, which is why lambda is 100 (protocols.md section 3).
"""

import torch
import torch.nn as nn

from ridrepro.distill.base import Distiller, ce, channel_param, spread, variance


def vid_term(t, mu, alpha):
    """One layer's negative Gaussian log-likelihood (up to a constant), averaged over b, c, h, w."""
    v = variance(alpha)
    return 0.5 * torch.mean(torch.log(v) + (t - mu) ** 2 / v)


def regressor(cs, ct):
    """mu(S): conv1x1(Cs->4Cs) BN ReLU conv1x1(4Cs->4Cs) BN ReLU conv1x1(4Cs->Ct), no bias (authors' code)."""
    h = 4 * cs
    return nn.Sequential(nn.Conv2d(cs, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                         nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                         nn.Conv2d(h, ct, 1, bias=False))


class VID(Distiller):
    def __init__(self, student, teacher, lam=100.0):
        super().__init__(student, teacher)
        self.lam = lam
        self.grad_weights = {"ce": 1.0, "vid": lam}
        self.mu = nn.ModuleList(regressor(cs, ct) for cs, ct in zip(student.channels, teacher.channels))
        self.alpha = nn.ParameterList(channel_param(ct) for ct in teacher.channels)

    def param_groups(self):
        return {"student": [*self.student.parameters(), *self.mu.parameters(), *self.alpha]}

    def loss(self, x, y, t_taps, phase):
        logits, s_taps = self.student(x, taps=True)
        ce_loss = ce(logits, y)
        distil = sum(vid_term(t, mu(s), a) for t, s, mu, a in zip(t_taps, s_taps, self.mu, self.alpha))
        return ce_loss + self.lam * distil, {"ce": ce_loss, "vid": distil}, logits

    @torch.no_grad()
    def epoch_stats(self):
        return {f"variance_{k}": v for k, v in spread([variance(a) for a in self.alpha]).items()}
