"""What a run measures besides accuracy: at the protocol's PID epochs, the PID atoms of (teacher tap, student
tap; label) on the test set for each PID teacher, and the PID layer's outputs stored as PCA components."""

import io
import time

from ridrepro.files import atomic_write_bytes
from ridrepro.train.tapcache import teacher_taps

# Bootstrap resamples behind every logged PID record's 95% intervals (about 1.5 s per record on one CPU thread).
PID_BOOTSTRAP = 100


class Measure:
    def __init__(self, protocol, data, teachers, seed, tap_cache=None):
        self.protocol, self.data, self.teachers, self.seed, self.tap_cache = protocol, data, teachers, seed, tap_cache
        self._teacher_test_taps = {}

    def due(self, epoch):
        """The PID-epoch rule: completed epoch `epoch` (1-based) is measured."""
        return bool(self.teachers) and epoch in self.protocol.pid_epochs

    def teacher_test_taps(self, label):
        """The PID layer's test outputs of a PID teacher, float32, computed once per run."""
        if label not in self._teacher_test_taps:
            teacher = self.teachers[label].to(self.data.test_x.device)
            self._teacher_test_taps[label] = teacher_taps(self.tap_cache, teacher, self.data.test_x, self.protocol,
                                                          (self.protocol.pid_layer,))[0][0]
        return self._teacher_test_taps[label]

    def pid(self, epoch, student_taps):
        """One record per PID teacher; student_taps are the student's PID-layer test outputs of this epoch."""
        from ridrepro.pid import representation_pid  # imported lazily: training must not need the PID stack

        records = []
        for label in self.teachers:
            t_taps = self.teacher_test_taps(label).cpu()  # before the clock: "seconds" times the PID alone
            start = time.perf_counter()
            res = representation_pid(t_taps, student_taps.cpu(), self.data.test_y.cpu(),
                                     preset=self.protocol.pid_preset, seed=self.seed, bootstrap=PID_BOOTSTRAP,
                                     **self.protocol.pid_overrides)
            records.append({"epoch": epoch, "teacher": label, "layer": self.protocol.pid_layer,
                            "n": len(self.data.test_y), **res.to_dict(), "seconds": time.perf_counter() - start})
        return records

    def store_pca(self, folder, epoch, student_taps):
        """pca<k>/s-e<epoch>.npy (the student) and, once per run, pca<k>/<teacher label>.npy, written atomically."""
        import numpy as np

        from ridrepro.pid.features import pca_float16

        k = self.protocol.store_pca
        folder = folder / f"pca{k}"
        folder.mkdir(exist_ok=True)
        items = [(f"s-e{epoch:03d}.npy", student_taps)]
        items += [(f"{label}.npy", None) for label in self.teachers if not (folder / f"{label}.npy").exists()]
        for name, taps in items:
            taps = self.teacher_test_taps(name[:-4]) if taps is None else taps
            buf = io.BytesIO()
            np.save(buf, pca_float16(taps, k, seed=self.seed))
            atomic_write_bytes(buf.getvalue(), folder / name)
