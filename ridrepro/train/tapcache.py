"""Frozen-teacher taps on disk, shared by the cells of a grid (`--tap-cache DIR`): the first cell writes them, the
others map the file (torch.load with mmap). A file is keyed by everything its floats depend on (teacher weights,
images, normalisation, batch size, taps, environment), so a cached tap is bit-identical to the one a cell would
compute. Why: book/engine.md, "Measurements after training".
"""

import hashlib
import json
from pathlib import Path

import torch

from ridrepro.files import atomic_torch_save, tensors_sha256
from ridrepro.models.forward import tap_features

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


def teacher_taps(cache, teacher, x_uint8, protocol, layers):
    """tap_features of a frozen teacher over a split, through `cache` (a TapCache, or None): (taps, where from)."""
    bs = protocol.eval_batch_size
    compute = lambda: tap_features(teacher, x_uint8, protocol.norm, bs, layers=layers)  # noqa: E731
    if cache is None:
        return compute(), None
    return cache.get(cache.key(teacher, x_uint8, protocol.norm, bs, layers), compute, x_uint8.device)
