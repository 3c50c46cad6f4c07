"""Saved networks: a teacher's weights with its record (teacher.json: seed, test accuracy, sha256), checked
on every load, and a student's final weights."""

import json
from pathlib import Path

import torch

from ridrepro.files import atomic_json, atomic_torch_save, file_sha256
from ridrepro.models import build_model


def load_teacher(path):
    """A teacher saved by save_teacher, after checking its sha256 against teacher.json."""
    path = Path(path)
    info_path = path / "teacher.json"
    if not info_path.exists():
        raise FileNotFoundError(f"no finished teacher in {path} (teacher.json missing)")
    info = json.loads(info_path.read_text())
    sha = file_sha256(path / "teacher.pt")
    if sha != info["sha256"]:
        raise ValueError(f"{path / 'teacher.pt'} has sha256 {sha[:12]}..., teacher.json says {info['sha256'][:12]}...")
    saved = torch.load(path / "teacher.pt", weights_only=True, map_location="cpu")
    model = build_model(tuple(saved["arch"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval().requires_grad_(False), info


def save_teacher(path, model, arch, seed, kind, test_acc, protocol, init_seed):
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save({"arch": list(arch), "state_dict": state, "seed": seed, "kind": kind}, path / "teacher.pt")
    info = {"kind": kind, "seed": seed, "init_seed": init_seed, "arch": list(arch), "test_acc": test_acc,
            "protocol": protocol, "sha256": file_sha256(path / "teacher.pt")}
    atomic_json(info, path / "teacher.json")
    return info


def load_student(folder, arch):
    """A finished run's student (student.pt), in eval mode."""
    model = build_model(arch)
    model.load_state_dict(torch.load(Path(folder) / "student.pt", weights_only=True, map_location="cpu"))
    return model.eval()
