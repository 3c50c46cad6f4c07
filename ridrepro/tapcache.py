"""Frozen-teacher taps on disk, shared by the cells of a grid (`--tap-cache DIR`).

Every VID, RID and TED cell of a grid runs the same frozen teacher over the same training images, and every
cell runs its PID teachers over the same test images: at full scale that is ~2.5 minutes of a WRN-40-2
forward per cell on one CPU thread. The first cell writes them here; the others map the file (torch.load with
mmap) instead of recomputing. A file is keyed by everything its floats depend on: the teacher's weights, the
images, the normalisation, the batch size, the taps, and the environment that computed them (device, CPU
kernel path, threads, torch). So a cached tap is bit-identical to the one the cell would compute itself, and
a cell whose environment differs computes and writes its own.
"""

import hashlib
import json
from pathlib import Path

import torch

from ridrepro.data import atomic_torch_save, tensors_sha256

ENV_KEYS = ("device", "cpu_capability", "kernel_env", "threads", "torch")


class TapCache:
    def __init__(self, folder, env):
        self.folder = Path(folder)
        self.env = {k: env.get(k) for k in ENV_KEYS}

    def key(self, teacher, x_uint8, norm, batch_size, layers):
        """Plain JSON values (torch.__version__ is a str subclass that a weights-only load refuses)."""
        return json.loads(json.dumps({"teacher": tensors_sha256(*teacher.state_dict().values()), "images": tensors_sha256(x_uint8),
                "n": len(x_uint8), "norm": [list(map(float, v)) for v in norm], "batch_size": batch_size,
                "layers": list(layers), **self.env}))

    def get(self, key, compute, device):
        """The cached tensors for `key`, or compute() (a list of tensors), written atomically for the next."""
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        path = self.folder / f"{name}.pt"
        if path.exists():
            saved = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
            if saved["key"] != key:
                raise ValueError(f"{path} holds taps for another key; delete it")
            return [t.to(device) for t in saved["taps"]], f"read from {path}"
        taps = compute()
        atomic_torch_save({"key": key, "taps": [t.cpu() for t in taps]}, path)
        return taps, f"computed and written to {path}"
