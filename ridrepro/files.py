"""Files the package writes and reads: atomic writes, sha256 digests, JSON and JSON-lines."""

import hashlib
import io
import json
import os
from pathlib import Path


def atomic_write_bytes(data, path):
    """Write bytes so that `path` holds either its old content or all of `data`, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj, path):
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def atomic_json(obj, path):
    atomic_write_bytes((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), path)


def file_sha256(path):
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def tensors_sha256(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def read_jsonl(path):
    """The records of a JSON-lines file ([] when it does not exist); a bad line is named by file and number."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for i, line in enumerate(path.read_text().splitlines()):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {i + 1}: not JSON ({e})") from None
    return records


def append_jsonl(path, record):
    """Append one record and make it durable before returning."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
