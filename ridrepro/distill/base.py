"""The Distiller interface shared by every method (mdistiller-style small base class).

A Distiller owns the student, the frozen teacher and the method's extra modules. It answers four
questions for the one training loop in ridrepro.train.engine:
  * param_groups(): the named parameter groups, one optimiser each;
  * phase(epoch) / phase_groups(phase): which groups step in which epoch (alternation is per epoch);
  * loss(x, y, t_taps, phase): the loss and its named terms for one batch;
  * uses_teacher: whether the teacher's taps are needed at all (BAS never runs the teacher).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Distiller(nn.Module):
    uses_teacher = True
    # The loss terms that train the student, with their weights in its loss: the engine compares the sizes of
    # their gradients once per epoch. Terms are returned undetached so that it can.
    grad_weights = {"ce": 1.0}

    def __init__(self, student, teacher=None):
        super().__init__()
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()

    def train(self, mode=True):
        # The teacher is a fixed function: batch-norm must keep using its running statistics even when
        # the engine puts the whole distiller in train mode.
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def extras(self):
        """The method's own modules: everything but the student and the teacher."""
        return [m for name, m in self.named_children() if name not in ("student", "teacher")]

    # --- what the engine asks -------------------------------------------------------------------
    def param_groups(self):
        return {"student": list(self.student.parameters())}

    def phase(self, epoch):
        return "train"

    def phase_groups(self, phase):
        return ("student",)

    def cycle(self, epoch):
        return None

    @torch.no_grad()
    def teacher_taps(self, x):
        return self.teacher(x, taps=True)[1]

    def loss(self, x, y, t_taps, phase):
        """Returns (loss, {term: value}, student logits or None when the student did not run)."""
        raise NotImplementedError

    # --- what the engine logs ---------------------------------------------------------------------
    def pop_stats(self):
        """Diagnostics of the last loss() call as detached tensors (the engine averages them over the epoch)."""
        stats, self._stats = getattr(self, "_stats", {}), {}
        return stats

    def epoch_stats(self):
        """Diagnostics of the method's parameters at the end of an epoch, as tensors."""
        return {}


def spread(values):
    """Mean, min and max of a list of per-layer tensors, each as a tensor over the layers."""
    return {"mean": torch.stack([v.mean() for v in values]), "min": torch.stack([v.min() for v in values]),
            "max": torch.stack([v.max() for v in values])}


def ce(logits, y):
    return F.cross_entropy(logits, y)


def variance(alpha):
    """Positive per-channel variance/weight from a free parameter: softplus(alpha) + 1e-3 (authors' code)."""
    return F.softplus(alpha) + 1e-3


def channel_param(channels, value=5.0):
    """One free parameter per channel, shaped (1, C, 1, 1) to broadcast over (B, C, H, W); alpha = 5 in the code."""
    return nn.Parameter(torch.full((1, channels, 1, 1), float(value)))
