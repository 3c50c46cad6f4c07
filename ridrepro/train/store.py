"""Run folders that survive interruption: config identity, environment record, append-only logs, atomic
checkpoint, lock.

A finished run is never recomputed; a folder whose config identity differs from the requested one is an
error, never overwritten. A run resumed in another environment (CPU kernel path, threads, torch, CUDA device
index or name) is allowed and recorded in config.json under "resumed_in"; one resumed on another device type
(cpu vs cuda) or bf16 setting is an error unless allowed (--allow-environment-change), and then recorded too.
"""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from ridrepro import __version__
from ridrepro.files import (RunLocked, UserError, append_jsonl, atomic_json, atomic_torch_save, atomic_write_bytes,
                            load_torch, read_json, unwritable)

# The way out when a run's own files are damaged: the folder is the run, so deleting it restarts the run.
RESTART = "delete that run folder to restart the run from scratch"


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# Environment variables that select the CPU kernels of torch (ATen), oneDNN and MKL. Float results depend on
# them as much as on the thread count: AVX2 and AVX512 kernels round differently.
KERNEL_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
# What must be equal for a resumed run to be bit-identical to an uninterrupted one.
BIT_IDENTITY_KEYS = ("device", "device_name", "cpu_capability", "kernel_env", "threads", "torch", "bf16")
ALLOW_ENV_FLAG = "--allow-environment-change"


def environment(device, bf16=False):
    return {"ridrepro": __version__, "git_commit": git_commit(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device), "bf16": bool(bf16),
            "device_name": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda"
            else platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "kernel_env": {k: os.environ[k] for k in KERNEL_VARS if k in os.environ},
            "threads": torch.get_num_threads(), "host": platform.node()}


def kernel_hint(env):
    """How to select the CPU kernels an environment() record ran with, e.g. 'ATEN_CPU_CAPABILITY=avx2'."""
    cap = env.get("cpu_capability")
    if cap is None:
        return "unknown (the run predates the record of its CPU kernels)"
    settings = {"ATEN_CPU_CAPABILITY": cap.lower(), **env.get("kernel_env", {})}
    return " ".join(f"{k}={v}" for k, v in settings.items())


def recorded_environment(config):
    """The environment a config.json records. Records made before bf16 was recorded count as bf16 off: the
    default, and the only setting a CPU run can have had."""
    return {"bf16": False, **config.get("environment", {})}


def env_breaks(old, new):
    """(key, old, new) for each change between two environment() records that changes the computation
    itself, not only its rounding: the device type (cpu vs cuda) and bf16."""
    breaks = []
    a, b = old.get("device", "cpu"), new.get("device", "cpu")
    if torch.device(a).type != torch.device(b).type:
        breaks.append(("device", a, b))
    a, b = old.get("bf16", False), new.get("bf16", False)
    if a != b:
        breaks.append(("bf16", a, b))
    return breaks


class RunDir:
    """One run's folder: config identity check, append-only logs, atomic checkpoint, lock."""

    def __init__(self, path, identity, env, provenance=None, allow_env_change=False):
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))  # normalise tuples -> lists for comparison
        self.env, self.provenance, self.allow_env_change = env, provenance, allow_env_change

    # --- lifecycle --------------------------------------------------------------------------------
    def open(self):
        """Create or re-open the folder; a differing identity, device type or bf16 setting is an error."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise unwritable(self.path, err) from err
        cfg = self.path / "config.json"
        if cfg.exists():
            old = read_json(cfg, RESTART)
            if old.get("identity") != self.identity:
                diff = sorted(_diff_keys(old.get("identity", {}), self.identity))
                raise ValueError(f"{self.path} holds a different run (differs in: {', '.join(diff)}); "
                                 "choose another --runs folder or delete that folder yourself")
            self._resume = self._read_checkpoint()  # a damaged checkpoint stops the run before anything is written
            first = recorded_environment(old)
            changed = [k for k in BIT_IDENTITY_KEYS if first.get(k) != self.env.get(k)]
            breaks = env_breaks(first, self.env) if not self.finished else []
            if breaks and not self.allow_env_change:
                # Another device type or autocast is another computation (CUDA kernels, bf16 rounding): half
                # a run of each is no result of either, so it takes an explicit choice.
                was = ", ".join(f"{k} {a}" for k, a, _ in breaks)
                now = ", ".join(f"{k} {b}" for k, _, b in breaks)
                raise ValueError(f"{self.path} was started with {was} and would resume with {now}; resume it "
                                 f"with the original setting, or pass {ALLOW_ENV_FLAG} to go on anyway (recorded "
                                 "in its config.json under resumed_in)")
            if changed and not self.finished:
                print(f"note: {self.path} resumes with a different " + ", ".join(
                    f"{k} ({first.get(k)} -> {self.env.get(k)})" for k in changed)
                    + ": the result will not be bit-identical to an uninterrupted run", file=sys.stderr)
                # Recorded, so that a reader of the run can tell it was continued elsewhere.
                record = {**self.env, "changed": changed, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "after_epoch": (self._resume or {}).get("metrics_lines", 0)}  # epochs run before
                if breaks:
                    record["allowed_by"] = ALLOW_ENV_FLAG
                old.setdefault("resumed_in", []).append(record)
                atomic_json(old, cfg)
        else:
            atomic_json({"identity": self.identity, "environment": self.env,
                         "data_provenance": self.provenance}, cfg)
        self._lock()
        return self

    def _lock(self):
        lock = self.path / "lock"
        try:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                text = lock.read_text().strip()
                pid = int(text) if text.isdigit() else 0
                if pid and _alive(pid):
                    raise RunLocked(f"{self.path} is in use by process {pid}") from None
                lock.unlink()  # left behind by a killed process
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        except OSError as err:
            lock.unlink(missing_ok=True)
            raise unwritable(lock, err) from err

    def close(self):
        (self.path / "lock").unlink(missing_ok=True)

    @property
    def finished(self):
        return (self.path / "finished.json").exists()

    def finish(self, summary):
        atomic_json(summary, self.path / "finished.json")

    # --- logs -------------------------------------------------------------------------------------
    def append(self, name, record):
        append_jsonl(self.path / name, record)

    def lines(self, name):
        p = self.path / name
        return p.read_text().splitlines() if p.exists() else []

    def truncate(self, name, n):
        """Keep the first n lines: records written after the last checkpoint are redone on resume."""
        lines = self.lines(name)
        if len(lines) != n:
            atomic_write_bytes("".join(line + "\n" for line in lines[:n]).encode(), self.path / name)

    # --- checkpoint -------------------------------------------------------------------------------
    def load_checkpoint(self):
        """The folder's checkpoint (read once, by open, when the folder existed), or None."""
        if hasattr(self, "_resume"):
            return self.__dict__.pop("_resume")
        return self._read_checkpoint()

    def _read_checkpoint(self):
        p = self.path / "checkpoint.pt"
        if not p.exists():
            return None
        state = load_torch(p, "delete it to restart this run from scratch (its logs are rewritten from epoch 1)",
                           weights_only=False)
        if not isinstance(state, dict) or "trainer" not in state:
            raise UserError(f"{p} is not a checkpoint of this package: delete it to restart this run from scratch")
        return state

    def save_checkpoint(self, state):
        atomic_torch_save(state, self.path / "checkpoint.pt")


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _diff_keys(a, b, prefix=""):
    for k in set(a) | set(b):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            yield prefix + k
