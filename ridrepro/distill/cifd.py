"""CIFD, Controlled Information Flow to enhance knowledge Distillation (Saidutta et al., NeurIPS 2024), reconstructed
from its slides and secondary summaries (no code is public; the project's reference notes, related.md section 1).

Stage 1 ("rdm" phase): rate-distortion modules (RDMs) reconstruct the frozen teacher's embedding e_T through
Gaussian channels of set rates. Stage 2 ("student" phase): the student learns from the teacher, the frozen RDMs and
an information-bottleneck module (IBM) on its embedding. Open points are tagged CHOICE (the rate, distortion, stage
2's noise, stage 2's KD, IBM, standardisation); the losses and each CHOICE's reason: book/engine.md, "CIFD".
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ridrepro.distill.base import Distiller, ce


def embedding(model, last_tap):
    """The penultimate embedding of a WideResNet from its last tap (what its classifier reads): the pooled
    group-3 output (post blocks), or that after the final BN-ReLU (pre blocks; a frozen teacher's BN is in eval
    mode, so this has no side effect)."""
    out = last_tap if model.block == "post" else F.relu(model.bn_final(last_tap))
    return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def channel_noise_std(rate, d_z):
    """The noise std s of a d_z-dim unit-power Gaussian channel whose capacity is `rate` nats:
    (d_z / 2) ln(1 + 1 / s^2) = rate. CHOICE (the rate): a set capacity, not a learnt VIB penalty."""
    if rate <= 0:
        raise ValueError(f"an RDM's rate must be positive, got {rate}")
    return 1.0 / math.sqrt(math.expm1(2.0 * rate / d_z))


def nmse(target, pred):
    """sum (target - pred)^2 / sum (target - batch mean of target)^2: 0 for a perfect reconstruction, 1 for the
    batch mean (CHOICE: the scale-free MSE). The target carries no gradient."""
    target = target.detach()
    var = ((target - target.mean(0, keepdim=True)) ** 2).sum().clamp_min(1e-12)
    return ((target - pred) ** 2).sum() / var


def kl_div(p_logits, q_logits, tau=1.0):
    """KL(softmax(p / tau) || softmax(q / tau)) per sample, averaged over the batch, times tau^2 (CHOICE: Hinton's
    scale)."""
    return F.kl_div(F.log_softmax(q_logits / tau, 1), F.log_softmax(p_logits.detach() / tau, 1), log_target=True,
                    reduction="batchmean") * tau ** 2


class Standardizer(nn.Module):
    """Per-dimension mean and std of e_T, accumulated exactly over every batch the "rdm" phase sees (so after
    its first epoch they are the training split's), fixed afterwards; buffers, so checkpoints carry them.
    CHOICE: RDMs and IBM decoders work on standardised e_T, as an untrained teacher's scale is arbitrary."""

    def __init__(self, d):
        super().__init__()
        self.register_buffer("total", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, e):
        e = e.detach().double()
        self.total += e.sum(0)
        self.total_sq += (e ** 2).sum(0)
        self.count += len(e)

    def forward(self, e):
        if self.count == 0:
            return e
        mean = self.total / self.count
        std = (self.total_sq / self.count - mean ** 2).clamp_min(0).sqrt() + 1e-6
        return (e - mean.to(e.dtype)) / std.to(e.dtype)


class RDM(nn.Module):
    """encoder (Linear-ReLU-Linear) -> unit-power Gaussian channel of `rate` nats -> decoder (Linear-ReLU-Linear)
    -> e_k, and a linear head on e_k, all on standardised e_T (Standardizer). CHOICE: 2-layer MLPs of `hidden`
    units (the slides say "2-3 layers"), d_z channel dims."""

    def __init__(self, d_in, rate, d_z=32, hidden=256, num_classes=10):
        super().__init__()
        self.rate, self.d_z = float(rate), d_z
        self.noise_std = channel_noise_std(rate, d_z)
        self.enc = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_z))
        self.dec = nn.Sequential(nn.Linear(d_z, hidden), nn.ReLU(), nn.Linear(hidden, d_in))
        self.head = nn.Linear(d_in, num_classes)

    def channel(self, e, noise=None):
        u = self.enc(e)
        z = u * (math.sqrt(self.d_z) / u.norm(dim=1, keepdim=True).clamp_min(1e-8))  # power d_z per sample
        return z + self.noise_std * (torch.randn_like(z) if noise is None else noise)

    def forward(self, e, noise=None):
        e_hat = self.dec(self.channel(e, noise))
        return e_hat, self.head(e_hat)


def rdm_loss(rdm, e_t, t_logits, y, noise=None):
    """Stage 1 for one RDM: (NMSE + KL(p_T || p_k) + CE, its terms). CHOICE: the three at weight 1, KL at tau 1."""
    e_hat, logits = rdm(e_t, noise)
    d, kl, c = nmse(e_t, e_hat), kl_div(t_logits, logits), ce(logits, y)
    return d + kl + c, {"nmse": d, "kl": kl, "ce": c}


class IBM(nn.Module):
    """The student's information bottleneck: a VIB on h_S (CHOICE) and linear decoders to e_T and each e_k."""

    def __init__(self, d_s, d_t, n_rdms, d_ib=64):
        super().__init__()
        self.enc = nn.Linear(d_s, 2 * d_ib)
        self.dec_t = nn.Linear(d_ib, d_t)
        self.dec_k = nn.ModuleList(nn.Linear(d_ib, d_t) for _ in range(n_rdms))

    def forward(self, h, noise=None):
        mu, logvar = self.enc(h).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * (torch.randn_like(mu) if noise is None else noise)
        kl = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(1).mean()
        return z, kl


class CIFD(Distiller):
    def __init__(self, student, teacher, lam=(1.0, 1.0, 1.0, 1.0), rates=(1.0, 4.0, 16.0, 64.0), d_z=32,
                 hidden=256, d_ib=64, beta_ib=0.01, tau=4.0, stage1_epochs=4, num_classes=10):
        super().__init__(student, teacher)
        if len(rates) < 1 or stage1_epochs < 0:
            raise ValueError(f"CIFD needs at least one RDM and stage1_epochs >= 0, got {rates}, {stage1_epochs}")
        self.w_ce, self.w_kd, self.w_rdm, self.w_ibm = lam
        self.grad_weights = {"ce": self.w_ce, "kd_teacher": self.w_kd, "kd_rdm": self.w_rdm,
                             "ibm_rec_teacher": self.w_ibm, "ibm_rec_rdm": self.w_ibm, "ibm_kl": self.w_ibm * beta_ib}
        self.beta_ib, self.tau, self.stage1_epochs = beta_ib, tau, stage1_epochs
        d_t, d_s = teacher.linear.in_features, student.linear.in_features
        self.rdms = nn.ModuleList(RDM(d_t, r, d_z, hidden, num_classes) for r in rates)
        self.ibm = IBM(d_s, d_t, len(rates), d_ib)
        self.standardize = Standardizer(d_t)
        self._h = None  # the student's embedding, as its classifier read it in the last forward
        student.linear.register_forward_pre_hook(self._keep_embedding)

    def _keep_embedding(self, module, args):
        self._h = args[0]

    def param_groups(self):
        return {"rdm": list(self.rdms.parameters()),
                "student": [*self.student.parameters(), *self.ibm.parameters()]}

    def phase(self, epoch):
        return "rdm" if epoch < self.stage1_epochs else "student"

    def phase_groups(self, phase):
        return ("rdm",) if phase == "rdm" else ("student",)

    def teacher_outputs(self, t_taps):
        """e_T and the teacher's logits from its (cached) taps: the teacher network itself never runs again."""
        with torch.no_grad():
            e_t = embedding(self.teacher, t_taps[-1])
            return e_t, self.teacher.linear(e_t)

    def loss(self, x, y, t_taps, phase):
        e_t, t_logits = self.teacher_outputs(t_taps)
        if phase == "rdm":
            self.standardize.update(e_t)
        e_t = self.standardize(e_t)
        if phase == "rdm":  # stage 1: the student does not run
            total, terms = 0.0, {}
            for k, rdm in enumerate(self.rdms):
                loss_k, parts = rdm_loss(rdm, e_t, t_logits, y)
                total = total + loss_k
                terms.update({f"rdm{k}_{name}": v.detach() for name, v in parts.items()})
            return total, terms, None
        return self.student_loss(x, y, e_t, t_logits)

    def student_loss(self, x, y, e_t, t_logits, rdm_noise=None, ibm_noise=None):
        with torch.no_grad():  # the RDMs are frozen; they keep their channel noise (CHOICE)
            rdm_out = [rdm(e_t, None if rdm_noise is None else rdm_noise[k]) for k, rdm in enumerate(self.rdms)]
        logits = self.student(x)
        h = self._h
        ce_loss = ce(logits, y)
        kd_t = kl_div(t_logits, logits, self.tau)
        # CHOICE: means over RDMs, so that their number does not set their weight
        kd_r = sum(kl_div(r_logits, logits, self.tau) for _, r_logits in rdm_out) / len(rdm_out)
        z, kl = self.ibm(h, ibm_noise)
        rec_t = nmse(e_t, self.ibm.dec_t(z))
        rec_r = sum(nmse(e_hat, dec(z)) for (e_hat, _), dec in zip(rdm_out, self.ibm.dec_k)) / len(rdm_out)
        ibm = rec_t + rec_r + self.beta_ib * kl
        loss = self.w_ce * ce_loss + self.w_kd * kd_t + self.w_rdm * kd_r + self.w_ibm * ibm
        terms = {"ce": ce_loss, "kd_teacher": kd_t, "kd_rdm": kd_r, "ibm_rec_teacher": rec_t, "ibm_rec_rdm": rec_r,
                 "ibm_kl": kl}
        return loss, terms, logits
