"""BAS: the student alone, cross-entropy only. Also trains teachers (same loss, another network)."""

from ridrepro.distill.base import Distiller, ce


class BAS(Distiller):
    uses_teacher = False

    def __init__(self, student):
        super().__init__(student, teacher=None)

    def loss(self, x, y, t_taps, phase):
        logits = self.student(x)
        loss = ce(logits, y)
        return loss, {"ce": loss}, logits
