"""Files the package writes and reads: atomic writes, sha256 digests, JSON and JSON-lines, and the one loader
through which every file a command reads goes, so that a damaged file is named with the way out."""

import errno
import hashlib
import io
import json
import os
from pathlib import Path


class UserError(ValueError):
    """An error the command line reports in one line, without a traceback (ridrepro.cli.main), exiting with
    `exit_code`: bad input, a damaged file, a destination that cannot be written."""

    exit_code = 2


class RunLocked(UserError):
    """Another live process holds a run's lock. Its own exit code, so that a grid can report a cell that lost the
    race for its folder as such rather than as a failure of the cell."""

    exit_code = 75  # EX_TEMPFAIL


# The destinations that cannot be written, with the way out: a one-line error, not an OSError traceback.
_UNWRITABLE = {errno.EROFS: "the file system is read-only; choose a writable folder (--runs, $RIDREPRO_CACHE)",
               errno.ENOSPC: "the disk is full; free space and re-run the same command to resume",
               errno.EDQUOT: "the disk quota is exceeded; free space and re-run the same command to resume",
               errno.EACCES: "permission denied; choose a folder you can write (--runs, $RIDREPRO_CACHE)",
               errno.EPERM: "permission denied; choose a folder you can write (--runs, $RIDREPRO_CACHE)"}


def unwritable(path, err):
    """The UserError for an OSError met writing `path`, or the OSError itself when it is not about the destination."""
    if isinstance(err, OSError) and err.errno in _UNWRITABLE:
        return UserError(f"cannot write {path}: {_UNWRITABLE[err.errno]}")
    return err


def atomic_write_bytes(data, path):
    """Write bytes so that `path` holds either its old content or all of `data`, never a torn file. On any failure
    (a full disk, a read-only folder, an interrupt) the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise unwritable(path, err) from err
    finally:
        tmp.unlink(missing_ok=True)  # gone after os.replace; removed here after any failure


def atomic_torch_save(obj, path):
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def atomic_json(obj, path):
    atomic_write_bytes((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), path)


def read_json(path, fix):
    """A JSON file's content; a damaged one is a UserError naming the file, the line and `fix` (the way out)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON (line {e.lineno}): {fix}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not valid JSON (not text): {fix}") from None


def load_torch(path, fix, **kwargs):
    """torch.load of a file written by atomic_torch_save; a damaged (e.g. truncated) one is a UserError naming
    the file and `fix`."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", **kwargs)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError, UnicodeDecodeError) as e:
        reason = str(e).split(". ")[0].splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is damaged ({reason}): {fix}") from None


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
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise unwritable(path, err) from err
