"""A neural toy for the nuisance argument of the paper (Theorem 3.1, Example 2), small enough for one CPU thread:
images holding a faint label template and a strong, independent nuisance template, a built matched-filter teacher
and a two-channel-bottleneck student. Both networks follow the engine's model interface (forward(x, taps=True) ->
(logits, [tap]), `.channels` / `.spatial` per tap). Why the toy is built so: book/neural_toy.ipynb.
"""

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from ridrepro.data import PAPER_CODE_NORM, DeviceData, normalize
from ridrepro.protocols import PAPER_CODE, Method, Optim


@dataclass(frozen=True)
class ToyTask:
    """Everything that defines the images; amplitudes and noise are in uint8 grey levels."""

    n_classes: int = 4
    n_nuisance: int = 16
    size: int = 8
    amp_y: float = 8.0
    amp_z: float = 24.0
    noise: float = 40.0
    pattern_seed: int = 0

    @property
    def pixels(self):
        return 3 * self.size * self.size


def templates(task):
    """(n_classes + n_nuisance, 3, size, size) float64 templates, orthogonal, each with unit pixel RMS.

    Orthogonal templates keep the label and the nuisance in separate directions of pixel space, so the
    only coupling between them is the uint8 rounding and clipping.
    """
    k = task.n_classes + task.n_nuisance
    if k > task.pixels:
        raise ValueError(f"{k} orthogonal templates do not fit in {task.pixels} pixels")
    g = torch.Generator().manual_seed(task.pattern_seed)
    q, _ = torch.linalg.qr(torch.randn(task.pixels, k, generator=g, dtype=torch.float64))
    return (q.T * task.pixels ** 0.5).reshape(k, 3, task.size, task.size)


@dataclass
class ToyData:
    train_x: torch.Tensor  # uint8 (N, 3, size, size)
    train_y: torch.Tensor  # int64 label
    train_z: torch.Tensor  # int64 nuisance, independent of the label
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_z: torch.Tensor

    def device_data(self, device="cpu"):
        """What the engine's Trainer reads: images and labels only (the nuisance is never shown to it)."""
        return DeviceData(*(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y)))


def sample(task, n, generator):
    """n images with independent uniform labels and nuisances: (x uint8, y, z)."""
    y = torch.randint(task.n_classes, (n,), generator=generator)
    z = torch.randint(task.n_nuisance, (n,), generator=generator)
    p = templates(task).float()
    eps = torch.randn(n, 3, task.size, task.size, generator=generator)
    x = 127.5 + task.amp_y * p[y] + task.amp_z * p[task.n_classes + z] + task.noise * eps
    return x.round().clamp(0, 255).to(torch.uint8), y, z


def make_toy_data(task, n_train, n_test, seed):
    """Train and test splits drawn from one generator: the same seed gives the same tensors."""
    g = torch.Generator().manual_seed(seed)
    return ToyData(*sample(task, n_train, g), *sample(task, n_test, g))


class TemplateTeacher(nn.Module):
    """Frozen matched-filter teacher: one tap (n_classes + n_nuisance channels, 1x1), logits = label channels.

    Channel j answers <x_norm, template_j> scaled so that template j at its own amplitude gives 1 (the
    constant offset of the normalisation is removed by the bias), i.e. a one-hot code of (Y, Z) plus
    noise of standard deviation noise / (amp sqrt(pixels)): large on the label part, small on the
    nuisance part. `nuisance_gain` scales the nuisance channels, the knob for "how loud" the nuisance is.
    """

    def __init__(self, task, norm=PAPER_CODE_NORM, nuisance_gain=1.0):
        super().__init__()
        self.task = task
        k = task.n_classes + task.n_nuisance
        self.channels, self.spatial = (k,), (1,)
        p = templates(task).float()
        std = torch.tensor(norm[1], dtype=torch.float32).view(1, 3, 1, 1)
        amp = torch.tensor([task.amp_y] * task.n_classes + [task.amp_z] * task.n_nuisance)
        gain = torch.tensor([1.0] * task.n_classes + [nuisance_gain] * task.n_nuisance)
        # A template at amplitude a adds a * p / (255 std) to the normalised image; dividing the filter by
        # a |p|^2 / (255 std) makes its response 1.
        weight = p * (255 * std) / (amp * task.pixels).view(k, 1, 1, 1) * gain.view(k, 1, 1, 1)
        self.conv = nn.Conv2d(3, k, task.size)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            # the grey level 127.5 normalises to x0 per channel; remove its response
            x0 = normalize(torch.full((1, 3, task.size, task.size), 127.5), *norm)
            self.conv.bias.zero_()
            self.conv.bias.copy_(-self.conv(x0).flatten())
        self.requires_grad_(False)

    def forward(self, x, taps=False):
        t = self.conv(x)
        logits = t[:, :self.task.n_classes].flatten(1)
        return (logits, [t]) if taps else logits


class ToyStudent(nn.Module):
    """conv3x3 BN ReLU, conv3x3/2 BN ReLU, a full-size conv to a `width`-channel 1x1 bottleneck + BN (the
    tap), and a linear classifier on it.

    The tap has no ReLU: with two channels a ReLU would throw away three quadrants of the plane.
    """

    def __init__(self, task, width=2, hidden=16):
        super().__init__()
        self.channels, self.spatial = (width,), (1,)
        half = task.size // 2
        self.features = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, width, half, bias=False), nn.BatchNorm2d(width))
        self.linear = nn.Linear(width, task.n_classes)

    def forward(self, x, taps=False):
        s = self.features(x)
        logits = self.linear(s.flatten(1))
        return (logits, [s]) if taps else logits


# ----------------------------------------------------------------------------- protocol

def toy_protocol(epochs=24, q=8, batch_size=64):
    """paper-code's losses, lambdas, clipping and optimisers, on a toy clock.

    Students: SGD (momentum 0.9, Nesterov, weight decay 5e-4) at paper-code's effective rate 0.0025
    (0.05 squared, divergence 1), constant: paper-code's drops at 1/2 and 2/3 of training are left out
    so that BAS, VID and RID share one learning rate throughout, as paper-code's RID does (divergence 2).
    RID's teacher filter: SGD at 0.05. VID lambda 100, RID (lambda1, lambda2) = (1, 10), clipping at 100
    for VID and RID only (divergence 5). RID: cpu-preview's cycle of q = 8 epochs with r = 1/4 (two
    filter epochs, six student epochs), the first cycle's filter epochs without the distillation term,
    epochs // q cycles.

    The authors' framework side effects (divergences 9-11: kaiming init of the method's own modules, two
    batch-norm updates per step, the student's forward in RID's warm-up) are not part of the methods and
    are left out: PyTorch's default init, one update per step, no warm-up forward.
    """
    if epochs % q:
        raise ValueError(f"epochs ({epochs}) must be a whole number of RID cycles of {q}")
    student = Optim("sgd", lr=0.0025)
    methods = {
        "bas": Method("bas", {"student": student}),
        "vid": Method("vid", {"student": student}, clip=100.0, lam=(100.0,)),
        "rid": Method("rid", {"student": student, "filter": Optim("sgd", lr=0.05)}, clip=100.0, lam=(1.0, 10.0),
                      rid=dict(warmup=0, cycles=epochs // q, q=q, r=0.25, filter_distil_from_cycle=1)),
    }
    return replace(PAPER_CODE, name="toy", teacher_arch=None, student_arch=None, epochs=epochs, methods=methods,
                   batch_size=batch_size, eval_batch_size=1000, train_per_class=None, test_per_class=None,
                   pid_epochs=tuple(range(0, epochs + 1, 2)), pid_layer=0, extras_init="torch",
                   notes="ridrepro.theory.toy: paper-code's method settings on a 3x8x8 synthetic task.")

