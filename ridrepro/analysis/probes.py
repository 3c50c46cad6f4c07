"""Ojha et al.'s probes (NeurIPS 2023, seed 003): in what ways does a distilled student become like its teacher?

Plain functions on tensors and models, one per probe, in the spirit of `dit`: each is a definition with an
exact-value test (tests/test_probes.py). Images enter as float pixels in [0, 1], shape (N, 3, H, W); every
function that runs a model takes the protocol's normalisation `norm` = (mean, std) and normalises internally,
so attacks and transformations act in pixel space. A model is called as model(x) -> logits and, for Grad-CAM
and CKA, model(x, taps=True) -> (logits, [tap, ...]) as ridrepro.models.WideResNet does. Models are put in
eval mode and left there.

Every probe compares a distilled student S_d with the independent baseline S_i (BAS), and S_i with a second
S_i (another BAS seed); that pairing is the driver's job (ridrepro.analysis.probe_grid). Choices the paper leaves
open, or that this project makes, are marked CHOICE in each docstring (related.md section 2 marks them [I]).
"""

import math

import torch
import torch.nn.functional as F

from ridrepro.data import norm_tensors, random_crop_flip

# CHOICE (related.md section 2 [I]): eps = 4/255 in pixel space (the top of Ojha et al.'s 2/255-4/255 range),
# alpha = eps / 4, k = 5 steps.
BIM_EPS = 4 / 255
BIM_STEPS = 5
# Ojha et al.'s jitter: torchvision ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2).
JITTER = (0.4, 0.4, 0.4, 0.2)


def _normed(x, norm):
    mean, std = norm_tensors(norm, x.device)
    return (x - mean) / std


def _batches(n, batch_size):
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


@torch.no_grad()
def predict(model, x, norm, batch_size=250):
    """Logits (float32, N x classes) of `model` in eval mode on pixel images x in [0, 1]."""
    model.eval()
    return torch.cat([model(_normed(x[s], norm)).float() for s in _batches(len(x), batch_size)])


# ----------------------------------------------------------------------------- agreement and KL

def agreement(logits_a, logits_b):
    """Top-1 agreement: the fraction of images on which argmax a = argmax b (1 for identical models).

    Ties between classes go to the lowest index (torch.argmax), the same rule for both models.
    """
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logits differ in shape: {tuple(logits_a.shape)} vs {tuple(logits_b.shape)}")
    return float((logits_a.argmax(1) == logits_b.argmax(1)).double().mean())


def kl_divergence(logits_p, logits_q):
    """KL(p || q) in nats, averaged over images: mean_n sum_c p_nc (log p_nc - log q_nc), p = softmax(logits_p).

    Call it as kl_divergence(teacher_logits, student_logits) for KL(teacher || student), the direction of
    Hinton's distillation loss. CHOICE: temperature 1 (the models' own predictive distributions).
    """
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"logits differ in shape: {tuple(logits_p.shape)} vs {tuple(logits_q.shape)}")
    lp, lq = F.log_softmax(logits_p.double(), 1), F.log_softmax(logits_q.double(), 1)
    return float((lp.exp() * (lp - lq)).sum(1).mean())


# ----------------------------------------------------------------------------- adversarial transfer

def bim(model, x, y, norm, eps=BIM_EPS, alpha=None, steps=BIM_STEPS, batch_size=100):
    """Basic iterative method (iterative FGSM), untargeted, in pixel space:

        I_0 = x,  I_{t+1} = Clip_[0,1]( Clip_{x, eps}( I_t + alpha * sign(grad_I CE(model(I_t), y)) ) ),

    for t < steps, where Clip_{x, eps} keeps every pixel within eps of x (the L-infinity ball) and Clip_[0,1]
    keeps the image valid. Returns I_steps (float32, same shape as x).

    CHOICE: eps and alpha are in pixel units of [0, 1] (eps = 4/255, alpha = eps/4 by default; the
    normalisation is applied inside, so they do not depend on the protocol's norm); the images are not
    re-quantised to 8 bits; y is the ground-truth label (Ojha et al.'s J(I_t, y)).
    """
    alpha = eps / 4 if alpha is None else alpha
    model.eval()
    out = []
    for s in _batches(len(x), batch_size):
        x0, yb = x[s].float(), y[s]
        xt = x0.clone()
        for _ in range(steps):
            xt.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(_normed(xt, norm)).float(), yb, reduction="sum")
                (g,) = torch.autograd.grad(loss, xt)
            with torch.no_grad():
                xt = xt + alpha * g.sign()
                xt = torch.minimum(torch.maximum(xt, x0 - eps), x0 + eps).clamp(0, 1)
        out.append(xt.detach())
    return torch.cat(out)


def fooled(logits_clean, logits_adv):
    """Per image: whether the adversarial image changes the model's top-1 prediction (bool, N)."""
    return logits_clean.argmax(1) != logits_adv.argmax(1)


def fooling_rate(logits_clean, logits_adv, keep):
    """The fraction of the kept images (bool mask `keep`: those that fool the attacker) on which a model's
    prediction changes: Ojha et al.'s transfer rate. NaN when no image is kept."""
    keep = torch.as_tensor(keep, dtype=torch.bool)
    n = int(keep.sum())
    if n == 0:
        return math.nan
    return float(fooled(logits_clean, logits_adv)[keep].double().mean())


def bim_attack(model, x, y, norm, eps=BIM_EPS, alpha=None, steps=BIM_STEPS, batch_size=100):
    """BIM on `model` and the images it keeps (those whose adversarial version changes its top-1): (adversarial
    images, keep mask, clean logits). With the teacher as attacker, the kept images are Ojha et al.'s transfer
    set; with a BAS of another seed, the foreign-attacker control's."""
    logits = predict(model, x, norm)
    adv = bim(model, x, y, norm, eps=eps, alpha=alpha, steps=steps, batch_size=batch_size)
    return adv, fooled(logits, predict(model, adv, norm)), logits


# ----------------------------------------------------------------------------- invariance

def color_jitter(x, brightness=JITTER[0], contrast=JITTER[1], saturation=JITTER[2], hue=JITTER[3], seed=0):
    """torchvision's ColorJitter applied image by image with its own random draw per image (a batch call of
    torchvision's would share one draw): factors uniform in [1 - b, 1 + b] (brightness, contrast,
    saturation) and [-h, h] (hue), the four adjustments in a random order, as ColorJitter does. Seeded."""
    import torchvision.transforms.v2.functional as TF

    gen = torch.Generator().manual_seed(seed)
    out = torch.empty_like(x, dtype=torch.float32)

    def draw(lo, hi):
        return float(lo + (hi - lo) * torch.rand((), generator=gen))

    for i in range(len(x)):
        img = x[i].float()
        order = torch.randperm(4, generator=gen).tolist()
        fb, fc = draw(max(0, 1 - brightness), 1 + brightness), draw(max(0, 1 - contrast), 1 + contrast)
        fs, fh = draw(max(0, 1 - saturation), 1 + saturation), draw(-hue, hue)
        for k in order:
            if k == 0 and brightness:
                img = TF.adjust_brightness(img, fb)
            elif k == 1 and contrast:
                img = TF.adjust_contrast(img, fc)
            elif k == 2 and saturation:
                img = TF.adjust_saturation(img, fs)
            elif k == 3 and hue:
                img = TF.adjust_hue(img, fh)
        out[i] = img.clamp(0, 1)
    return out


def crop_flip(x, seed=0):
    """The teachers' training augmentation (ridrepro.data.random_crop_flip: zero-pad 4, random 32x32 crop,
    horizontal flip with probability 1/2), one seeded draw per image. The students never train with it."""
    return random_crop_flip(x, generator=torch.Generator().manual_seed(seed))


def hflip(x):
    """Horizontal flip of every image (deterministic)."""
    return x.flip(-1)


TRANSFORMS = {"jitter": color_jitter, "crop_flip": crop_flip, "hflip": lambda x, seed=0: hflip(x)}


def invariance(logits_clean, logits_transformed):
    """Invariance agreement: the fraction of images with argmax f(x) = argmax f(t(x)) for one model f
    (Ojha et al.'s % of images whose prediction survives the transformation t).

    The control that tells a teacher-specific invariance from a general one is in the comparison, not the
    formula: a student's value against Ind's (BAS), under a transformation the teacher was trained with and
    one it never saw, and with a teacher that lacks the property (the untrained one). CHOICE (no jitter-trained
    teacher here): the teachers trained with crop + flip, which no student saw, so t = crop_flip is the
    teacher-specific property and t = jitter (seen by nobody) the general-invariance control.
    """
    return agreement(logits_clean, logits_transformed)


# ----------------------------------------------------------------------------- Grad-CAM localisation

def grad_cam(model, x, y, norm, layer=-1, batch_size=100):
    """Grad-CAM maps of class y per image, flattened (float32, N x H*W at the input's size H x W):

        A = the tap `layer` (default the last conv group), w_k = mean_ij d logit_y / d A_kij,
        CAM = ReLU( upsample( sum_k w_k A_k ) ),   flattened.

    CHOICE (related.md [I]): the last conv block's output (the WideResNet's third group), bilinear upsampling
    to the input size (align_corners=False) before the ReLU, then flatten.
    """
    model.eval()
    out = []
    for s in _batches(len(x), batch_size):
        xb = _normed(x[s].float(), norm).requires_grad_(True)  # so the graph exists with frozen weights
        with torch.enable_grad():
            logits, taps = model(xb, taps=True)
            a = taps[layer]
            (g,) = torch.autograd.grad(logits.float().gather(1, y[s][:, None]).sum(), a)
        with torch.no_grad():
            cam = (g.float().mean((2, 3), keepdim=True) * a.float()).sum(1, keepdim=True)
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
            out.append(cam.clamp_min(0).flatten(1))
    return torch.cat(out)


def cosine(a, b):
    """Row-wise cosine similarity of two N x D tensors. CHOICE: a row that is all zero (a CAM with no positive
    evidence) has cosine 0 with everything."""
    a, b = a.double(), b.double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    den = na * nb
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))


def localisation_score(cam_t, cam_d, cam_i):
    """Ojha et al.'s localisation score: the fraction of images on which the distilled student's map is closer
    to the teacher's than the independent student's, cos(CAM_T, CAM_Sd) > cos(CAM_T, CAM_Si); 0.5 is chance.

    CHOICE: an exact tie counts one half, so that S_d = S_i scores exactly 0.5.
    """
    cd, ci = cosine(cam_t, cam_d), cosine(cam_t, cam_i)
    return float(((cd > ci).double() + 0.5 * (cd == ci).double()).mean())


# ----------------------------------------------------------------------------- CKA

@torch.no_grad()
def tap_features(model, x, norm, batch_size=250):
    """Every tap of `model` (model(x, taps=True)[1]) on x, each flattened per image: a list of N x D float32."""
    model.eval()
    parts = None
    for s in _batches(len(x), batch_size):
        taps = model(_normed(x[s].float(), norm), taps=True)[1]
        taps = [t.float().flatten(1) for t in taps]
        parts = [[t] for t in taps] if parts is None else [p + [t] for p, t in zip(parts, taps)]
    return [torch.cat(p) for p in parts]


def centered_gram(x):
    """H X X^T H (float64, N x N) for features X (N x D), H = I - 11^T/N: the linear kernel's centred Gram."""
    x = x.double().flatten(1)
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def cka_from_grams(k, l):
    """Linear CKA from two centred Grams: <K, L>_F / (||K||_F ||L||_F)."""
    den = float(k.norm() * l.norm())
    return float((k * l).sum()) / den if den > 0 else math.nan


def linear_cka(x, y):
    """Linear CKA (Kornblith et al. 2019) of two representations of the same N images (N x D1, N x D2):

        CKA(X, Y) = ||Y_c^T X_c||_F^2 / ( ||X_c^T X_c||_F ||Y_c^T Y_c||_F ),   X_c, Y_c: columns centred,

    computed through the centred Grams (HSIC with a linear kernel). CHOICE: the plain (biased) estimator, not
    the debiased one; it is 1 for Y = X Q (Q orthogonal) or Y = c X, and the squared correlation for 1-D
    features.
    """
    return cka_from_grams(centered_gram(x), centered_gram(y))
