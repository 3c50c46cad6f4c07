"""CIFD, Controlled Information Flow for knowledge Distillation (Saidutta et al., NeurIPS 2024), reconstructed.

No code is public and the full text could not be retrieved (/work/shared/reference/related.md section 1);
this follows the slides (seed 002) and the secondary summaries. Every choice they leave open is marked CHOICE.

Rate-Distortion Modules (RDMs) mimic teacher assistants: RDM_k sends the frozen teacher's penultimate embedding
e_T through a rate-limited noisy channel and reconstructs it, e_k = dec(channel_k(enc(e_T))), with a linear
head for its own logits. A lower rate gives more distortion, like a smaller assistant. An Information Bottleneck
Module (IBM) in the student (a stochastic bottleneck on the student's penultimate embedding h_S with linear
decoders to e_T and to every e_k) regularises the feedback from many RDMs; it is not part of the student
network, so inference (and every evaluation) reads the clean h_S through the student's own classifier.

e_T, e_k and the IBM's targets are standardised with e_T's training statistics (CHOICE, see Standardizer).

Two stages, as two phases of the engine's loop (as TED's stage 1 and 2; the RDMs read the teacher's cached
taps, so stage 1 never runs the teacher or the student):
  "rdm" (the first `stage1_epochs` epochs), only the RDMs step, per RDM k:
      NMSE(e_T, e_k) + KL(p_T || p_k) + CE(y, p_k)            [+ the rate: fixed by the channel, see below]
  "student", the student and the IBM step, the RDMs frozen:
      w_ce CE(y, s) + w_kd tau^2 KL(p_T^tau || s^tau) + w_rdm mean_k tau^2 KL(p_k^tau || s^tau)
      + w_ibm [ NMSE(e_T, D_T(z)) + mean_k NMSE(e_k, D_k(z)) + beta_ib KL(q(z | h_S) || N(0, I)) ]

CHOICE (the rate term): a Gaussian channel with a power constraint rather than a VIB penalty. The encoder's
d_z outputs are scaled to unit power per dimension (each sample's vector to norm sqrt(d_z)), then N(0, s_k^2)
noise is added, so I(e_T; channel output) <= (d_z / 2) ln(1 + 1 / s_k^2) = R_k nats, with s_k solved from R_k
(the capacity of d_z parallel unit-power Gaussian channels; data processing bounds what reaches e_k). Why: the rate of each RDM
is then set, not learnt, so it is the same for the trained and the untrained teacher (the comparison this
project makes), RDMs are ordered by rate by construction, and a rate-distortion curve has an exact x-axis. A
VIB's beta_k would give rates that depend on the teacher and on training, measured only through an upper
bound. The slides' "rate loss" is the Lagrangian form of the same problem; here the constraint replaces it, so
the rate enters the stage-1 loss as a constant (the rates are recorded in the run's method spec, never
optimised).
CHOICE (distortion): NMSE = MSE divided by the batch's variance of the target (summed over dimensions), a
scale-free MSE, so that an untrained teacher's embedding scale does not set the weight of the term.
CHOICE (stage 2's RDM outputs): the RDMs keep their channel noise (a fresh draw per step, from torch's global
generator, which checkpoints save): without it an RDM would pass e_T at an unlimited rate.
CHOICE (stage 2's KD): KL at temperature tau scaled by tau^2 (Hinton), to the teacher and to each RDM; the RDMs'
terms (and the IBM's RDM reconstructions) are averaged over RDMs, so their number does not set their weight.
CHOICE (IBM): a VIB on h_S (linear encoder to mean and log-variance of d_ib dims, one reparametrised draw,
weight beta_ib on its KL); additive noise alone could be beaten by scaling h_S up.
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
    """The noise std s of a d_z-dim unit-power Gaussian channel whose capacity is `rate` nats."""
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
    """KL(softmax(p / tau) || softmax(q / tau)) per sample, averaged over the batch, times tau^2 (Hinton's scale)."""
    return F.kl_div(F.log_softmax(q_logits / tau, 1), F.log_softmax(p_logits.detach() / tau, 1), log_target=True,
                    reduction="batchmean") * tau ** 2


class Standardizer(nn.Module):
    """Per-dimension mean and std of e_T, accumulated exactly over every batch the "rdm" phase sees (so after
    its first epoch they are the training split's), fixed afterwards; buffers, so checkpoints carry them.
    CHOICE: RDMs and IBM decoders work on standardised e_T (an untrained teacher's embedding can have any scale,
    and a fixed learning rate cannot follow it); each dimension then weighs equally in the distortion."""

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
    units ("2-3 layers" [S]), d_z channel dims."""

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
        kd_r = sum(kl_div(r_logits, logits, self.tau) for _, r_logits in rdm_out) / len(rdm_out)
        z, kl = self.ibm(h, ibm_noise)
        rec_t = nmse(e_t, self.ibm.dec_t(z))
        rec_r = sum(nmse(e_hat, dec(z)) for (e_hat, _), dec in zip(rdm_out, self.ibm.dec_k)) / len(rdm_out)
        ibm = rec_t + rec_r + self.beta_ib * kl
        loss = self.w_ce * ce_loss + self.w_kd * kd_t + self.w_rdm * kd_r + self.w_ibm * ibm
        terms = {"ce": ce_loss, "kd_teacher": kd_t, "kd_rdm": kd_r, "ibm_rec_teacher": rec_t, "ibm_rec_rdm": rec_r,
                 "ibm_kl": kl}
        return loss, terms, logits


# ----------------------------------------------------------------------------- stage 1 alone, and the RD curve

def fit_rdms(rdms, e_t, t_logits, y, epochs, batch_size=128, lr=3e-3, clip=100.0, seed=0):
    """Stage 1 outside the engine, on (standardised) embeddings in memory: what the "rdm" phase does (the same
    loss, Adam, clipping, one shuffle per epoch), for the rate-distortion curve and tests. Returns the last
    epoch's mean loss."""
    opt = torch.optim.Adam(rdms.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    rdms.train()
    for _ in range(epochs):
        order, total = torch.randperm(len(y), generator=gen), 0.0
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            noise = [torch.randn(len(idx), r.d_z, generator=gen) for r in rdms]
            loss = sum(rdm_loss(r, e_t[idx], t_logits[idx], y[idx], n)[0] for r, n in zip(rdms, noise))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rdms.parameters(), clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
    return total / len(y)


@torch.no_grad()
def rdm_outputs(rdm, e_t, seed=0):
    """e_k and logits of one RDM on e_t, through its channel with one seeded noise draw."""
    noise = torch.randn(len(e_t), rdm.d_z, generator=torch.Generator().manual_seed(seed))
    return rdm(e_t, noise)


def rate_distortion(train, test, rates, d_z=32, hidden=256, epochs=4, batch_size=128, lr=3e-3, seed=0,
                    pid=True, pid_preset="paper-code", **pid_overrides):
    """One RDM per rate trained on `train` and measured on `test`, each an (e_T, teacher logits, y) triple.

    One row per rate: rate (nats, set by the channel), test NMSE of the standardised e_T (distortion), RDM
    accuracy, teacher accuracy, agreement with the teacher's top-1, KL(p_T || p_k), and with pid=True the PID
    of (e_T, e_k; Y) on the test set (ridrepro.pid.representation_pid, the engine's features path: L2-normalised
    rows, PCA, KMeans), with e_T and e_k both standardised by the training split's statistics.
    CHOICE: each RDM is trained alone (stage 1 sums independent losses, so this equals training them together
    up to the noise draws), with the method's stage-1 settings by default.
    """
    e_tr, l_tr, y_tr = train
    e_te, l_te, y_te = test
    std = Standardizer(e_tr.shape[1])
    std.update(e_tr)  # what the engine's "rdm" phase has accumulated after its first epoch
    e_tr, e_te = std(e_tr), std(e_te)
    rows = []
    for i, rate in enumerate(rates):
        torch.manual_seed(seed + i)
        rdm = RDM(e_tr.shape[1], rate, d_z, hidden, num_classes=l_tr.shape[1])
        fit_rdms(nn.ModuleList([rdm]), e_tr, l_tr, y_tr, epochs, batch_size, lr, seed=seed + i)
        rdm.eval()
        e_hat, logits = rdm_outputs(rdm, e_te, seed=seed + i)
        row = {"rate": float(rate), "noise_std": rdm.noise_std, "nmse": float(nmse(e_te, e_hat)),
               "acc": float((logits.argmax(1) == y_te).float().mean()),
               "teacher_acc": float((l_te.argmax(1) == y_te).float().mean()),
               "agreement": float((logits.argmax(1) == l_te.argmax(1)).float().mean()),
               "kl_teacher": float(kl_div(l_te, logits))}
        if pid:
            from ridrepro.pid import representation_pid  # lazily: training must not need the PID stack
            res = representation_pid(e_te, e_hat, y_te, preset=pid_preset, seed=seed, **pid_overrides).to_dict()
            row.update({k: res[k] for k in ("red", "uni_t", "uni_s", "syn", "unit")})
        rows.append(row)
    return rows


def teacher_rate_distortion(teacher, train_x, train_y, test_x, test_y, norm, rates=(0.25, 1, 2, 4, 8, 16, 64),
                            eval_batch_size=128, **kw):
    """rate_distortion on a frozen teacher network: its embeddings and logits of uint8 images (one forward
    pass each, ridrepro.engine.tap_features). With a protocol: the students' training subset and its test set,
    e.g. cpu-4k's teacher-ut-s0 (4,000 + 10,000 images): 7 rates with the method's stage 1 and PID took 735 s
    on one thread of a 2-core machine at load ~7 (most of it the WRN-40-2 forward); test NMSE fell from 1.02 at
    0.25 nats to 0.21 at 64, Red(Y: e_T, e_k) rose from 0.015 to 0.088 nats, Uni_T fell from 0.078 to 0.005."""
    from ridrepro.engine import tap_features

    def outputs(x):
        with torch.no_grad():
            e = embedding(teacher, tap_features(teacher, x, norm, eval_batch_size, layers=(2,))[0])
            return e.contiguous(), teacher.linear(e)

    teacher.eval()
    (e_tr, l_tr), (e_te, l_te) = outputs(train_x), outputs(test_x)
    return rate_distortion((e_tr, l_tr, train_y), (e_te, l_te, test_y), rates, **kw)
