"""Run folders that survive interruption, and the functions that run one grid cell.

Layout (root defaults to ./runs):
    <root>/<protocol>/teacher-<tt|ut>-s<seed>/     teacher.pt, teacher.json (seed, test accuracy, sha256)
    <root>/<protocol>/bas-s<seed>/                 BAS has no teacher
    <root>/<protocol>/<vid|rid|ted>-<tt|ut>-s<seed>/
(a teacher seed other than 0 is appended to the teacher label: rid-tt3-s0 uses teacher-tt-s3).
Each folder holds config.json (identity + environment), metrics.jsonl, pid.jsonl, checkpoint.pt (written
atomically after every epoch) and, once complete, finished.json and its weights (student.pt or teacher.pt).
A finished run is never recomputed; a folder whose config identity differs from the requested one is an
error, never overwritten. A run resumed in another environment (CPU kernel path, threads, torch, CUDA device
index or name) is allowed and recorded in config.json under "resumed_in"; one resumed on another device type
(cpu vs cuda) or bf16 setting is an error unless allowed (--allow-environment-change), and then recorded too.
"""

import copy
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from ridrepro import __version__
from ridrepro.data import atomic_torch_save, atomic_write_bytes, tensors_sha256
from ridrepro.engine import Trainer, build_distiller, build_model, evaluate, to_device
from ridrepro.tapcache import TapCache

TEACHER_KINDS = ("tt", "ut")


# ----------------------------------------------------------------------------- names

def teacher_label(kind, teacher_seed=0):
    if kind not in TEACHER_KINDS:
        raise ValueError(f"teacher must be one of {TEACHER_KINDS}, got {kind!r}")
    return kind if teacher_seed == 0 else f"{kind}{teacher_seed}"


def teacher_dir(root, protocol, kind, seed):
    return Path(root) / protocol / f"teacher-{teacher_label(kind)}-s{seed}"


def student_dir(root, protocol, method, seed, teacher=None, teacher_seed=0):
    name = f"bas-s{seed}" if method == "bas" else f"{method}-{teacher_label(teacher, teacher_seed)}-s{seed}"
    return Path(root) / protocol / name


# ----------------------------------------------------------------------------- files

def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_json(obj, path):
    atomic_write_bytes((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), path)


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
        self.path.mkdir(parents=True, exist_ok=True)
        cfg = self.path / "config.json"
        if cfg.exists():
            old = json.loads(cfg.read_text())
            if old.get("identity") != self.identity:
                diff = sorted(_diff_keys(old.get("identity", {}), self.identity))
                raise ValueError(f"{self.path} holds a different run (differs in: {', '.join(diff)}); "
                                 "choose another --runs folder or delete that folder yourself")
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
                record = {**self.env, "changed": changed, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = int(lock.read_text().strip() or 0)
            if pid and _alive(pid):
                raise ValueError(f"{self.path} is in use by process {pid}")
            lock.unlink()  # left behind by a killed process
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)

    def close(self):
        (self.path / "lock").unlink(missing_ok=True)

    @property
    def finished(self):
        return (self.path / "finished.json").exists()

    def finish(self, summary):
        atomic_json(summary, self.path / "finished.json")

    # --- logs -------------------------------------------------------------------------------------
    def append(self, name, record):
        with open(self.path / name, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

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
        p = self.path / "checkpoint.pt"
        return torch.load(p, weights_only=False, map_location="cpu") if p.exists() else None

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


# ----------------------------------------------------------------------------- teachers

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


# ----------------------------------------------------------------------------- one cell

class Options:
    """Execution options shared by every cell (not part of a run's identity)."""

    def __init__(self, root="runs", device="cpu", teacher_cache="auto", bf16=False, progress=False, log=print,
                 allow_env_change=False, cache_share=0.5, tap_cache=None):
        self.root, self.device, self.teacher_cache = Path(root), torch.device(device), teacher_cache
        self.bf16, self.progress, self.log = bf16, progress, log
        self.allow_env_change = allow_env_change  # resume on another device type or bf16 setting
        self.cache_share = cache_share  # of free memory the teacher cache may take (auto mode)
        self.tap_cache = tap_cache  # folder of teacher taps shared by the cells (ridrepro.tapcache), or None


def protocol_data(protocol, ds):
    if protocol.train_per_class is None and protocol.test_per_class is None:
        return ds
    return ds.subset(protocol.train_per_class, protocol.test_per_class, seed=protocol.subset_seed)


def teacher_data(protocol, ds):
    """The teacher's data: the students' subset, or (teacher_data="all") the whole training split with the
    students' test subset."""
    if protocol.teacher_data == "students":
        return protocol_data(protocol, ds)
    if protocol.teacher_data != "all":
        raise ValueError(f"teacher_data must be 'students' or 'all', got {protocol.teacher_data!r}")
    return ds if protocol.test_per_class is None else ds.subset(None, protocol.test_per_class, seed=protocol.subset_seed)


# The protocol settings a trained teacher depends on. A teacher's identity holds only these, so that the
# students' settings (sizes, epochs, PID epochs) can still be fixed after their teacher has started. Protocols
# with teacher_data "students" keep every setting, as before (the subset is the students' too).
TEACHER_SETTINGS = ("teacher_arch", "batch_size", "eval_batch_size", "teacher_augment", "norm", "teacher_shuffle",
                    "teacher_data", "test_per_class", "subset_seed", "ut_init_offset")


def _identity(protocol, ds, method_name, seed, **extra):
    shared = {k: v for k, v in protocol.to_dict().items() if k not in ("methods", "teacher", "notes")}
    if method_name == "teacher" and protocol.teacher_data == "all":
        shared = {k: shared[k] for k in TEACHER_SETTINGS}
    m = protocol.method(method_name)
    return {"protocol": protocol.name, "settings": shared, "method": method_name, "method_spec": _plain(m),
            "epochs": protocol.epochs_of(method_name), "seed": seed,
            "data_sha256": tensors_sha256(ds.train_x, ds.train_y, ds.test_x, ds.test_y),
            "data_sizes": [len(ds.train_y), len(ds.test_y)], **extra}


def _plain(obj):
    from dataclasses import asdict
    return asdict(obj)


def _store_pca(path, trainer, student_taps, epoch, k):
    """pca<k>/s-e<epoch>.npy (the student) and, once per run, pca<k>/<teacher label>.npy, written atomically."""
    import numpy as np

    from ridrepro.engine import pca_float16

    folder = path / f"pca{k}"
    folder.mkdir(exist_ok=True)
    items = [(f"s-e{epoch:03d}.npy", student_taps)]
    items += [(f"{label}.npy", None) for label in trainer.pid_teachers if not (folder / f"{label}.npy").exists()]
    for name, taps in items:
        taps = trainer.teacher_test_taps(name[:-4]) if taps is None else taps
        buf = io.BytesIO()
        np.save(buf, pca_float16(taps, k, seed=trainer.pid_seed))
        atomic_write_bytes(buf.getvalue(), folder / name)


def ensure_teacher(protocol, ds, kind, seed, opts):
    """Train (tt) or initialise (ut) a teacher unless it is finished; returns (model, info). A protocol that
    borrows another's teachers (protocols.BorrowedTeachers) only loads them and checks their pinned sha256."""
    path = teacher_dir(opts.root, protocol.teacher_home, kind, seed)
    if protocol.teacher_home != protocol.name:
        if not (path / "teacher.json").exists() or not (path / "teacher.pt").exists():
            raise FileNotFoundError(f"protocol {protocol.name} uses {protocol.teacher_home}'s committed teacher, "
                                    f"expected in {path}; use --runs results, or copy that folder into --runs")
        model, info = load_teacher(path)
        protocol.check_teacher(kind, info)
        return model, info
    if (path / "teacher.json").exists():
        if not (path / "teacher.pt").exists():
            _rebuild_teacher_weights(protocol, ds, kind, seed, opts, path)
        return load_teacher(path)
    ds = teacher_data(protocol, ds)
    identity = _identity(protocol, ds, "teacher", seed, teacher_kind=kind)
    if kind == "ut":
        identity["epochs"] = 0
    run = RunDir(path, identity, environment(opts.device, opts.bf16), ds.provenance, opts.allow_env_change).open()
    # divergence 13: with an offset the ut teacher is a construction of its own, not the tt teacher's start
    init_seed = seed + (protocol.ut_init_offset if kind == "ut" else 0)
    try:
        torch.manual_seed(init_seed)
        model = build_model(protocol.teacher_arch)
        data = to_device(ds, opts.device)
        if kind == "tt":
            trainer = Trainer(build_distiller(protocol.teacher, model), protocol.teacher, protocol, data,
                              epochs=protocol.epochs_of("teacher"), seed=seed, device=opts.device,
                              augment=protocol.teacher_augment, shuffle=protocol.teacher_shuffle,
                              teacher_cache=opts.teacher_cache, cache_share=opts.cache_share, bf16=opts.bf16,
                              log=opts.log)
            _fit(run, trainer, protocol, opts, f"teacher-{kind}-s{seed}", pid=False)
            model = trainer.distiller.student
        elapsed = stopwatch("other_")
        acc, _, _ = evaluate(model.to(opts.device), data.test_x, data.test_y, protocol.norm, protocol.eval_batch_size)
        info = save_teacher(path, model, protocol.teacher_arch, seed, kind, acc, protocol.name, init_seed)
        # other_seconds: the final float32 evaluation, outside the epochs' seconds (ridrepro.results.run_core_hours)
        run.finish({"test_acc": acc, "sha256": info["sha256"], **elapsed()})
        opts.log(f"teacher {kind} seed {seed}: test accuracy {acc:.4f}, sha256 {info['sha256'][:12]}")
    finally:
        run.close()
    return load_teacher(path)


def _rebuild_teacher_weights(protocol, ds, kind, seed, opts, path):
    """The fallback when a finished teacher's weights are missing (committed grids carry them). Training is
    bit-identical on the same CPU kernel path and thread count, so the weights are rebuilt in a scratch folder
    and kept only if their sha256 matches."""
    want = json.loads((path / "teacher.json").read_text())["sha256"]
    scratch = path.parent / f".rebuild-{path.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    opts.log(f"{path}: teacher.pt is missing; rebuilding it to match teacher.json")
    sub = copy.copy(opts)
    sub.root = scratch
    _, info = ensure_teacher(protocol, ds, kind, seed, sub)
    rebuilt = teacher_dir(scratch, protocol.name, kind, seed)
    if info["sha256"] != want:
        env = recorded_environment(json.loads((path / "config.json").read_text()))
        here = environment(opts.device, opts.bf16)
        differ = [k for k in BIT_IDENTITY_KEYS if env.get(k) != here.get(k)]
        cause = (f"the likely cause: this process differs from the original in {', '.join(differ)} "
                 f"(float results depend on the CPU's kernel path and thread count, not only on the code)"
                 if differ else "the original environment matches this one, so the code or data changed")
        raise ValueError(
            f"rebuilt teacher {path.name} has sha256 {info['sha256'][:12]}..., teacher.json says {want[:12]}...; "
            f"the original ran on {env.get('device')} ({env.get('device_name')}) with kernels "
            f"{env.get('cpu_capability')}, {env.get('threads')} threads and torch {env.get('torch')}; this process "
            f"has kernels {here['cpu_capability']}, {here['threads']} threads and torch {here['torch']}. {cause}. "
            f"Fix: put the grid's committed {path / 'teacher.pt'} back (grids under results/ are committed with "
            f"their weights), or rebuild with the original kernels and threads ({kernel_hint(env)} and --threads "
            f"{env.get('threads')}, where this CPU has them). The rebuild is kept in {rebuilt} for inspection")
    os.replace(rebuilt / "teacher.pt", path / "teacher.pt")
    shutil.rmtree(scratch)


def distil(protocol, ds, method, seed, teacher=None, teacher_seed=0, opts=None):
    """Run one grid cell to completion (resuming if interrupted); returns its finished.json content."""
    opts = opts or Options()
    spec = protocol.method(method)
    if method == "bas" and teacher is not None:
        raise ValueError("BAS has no teacher; leave --teacher out")
    if method != "bas" and teacher not in TEACHER_KINDS:
        raise ValueError(f"method {method} needs --teacher tt or ut")
    path = student_dir(opts.root, protocol.name, method, seed, teacher, teacher_seed)
    if (path / "finished.json").exists():
        opts.log(f"{path} is finished; not recomputed")
        return json.loads((path / "finished.json").read_text())
    # PID needs the teachers: the cell's own, or both for BAS (its atoms are reported against each).
    kinds = TEACHER_KINDS if method == "bas" else (teacher,)
    teachers = {k: ensure_teacher(protocol, ds, k, teacher_seed, opts) for k in kinds}
    init = None
    if spec.init_from:  # paper-text TED fine-tunes the finished BAS student of the same seed
        distil(protocol, ds, spec.init_from, seed, opts=opts)
        init = student_dir(opts.root, protocol.name, spec.init_from, seed)
        if not (init / "student.pt").exists():
            raise FileNotFoundError(f"{init} is finished but its student.pt is missing, and {method} starts from it; "
                                    "put the committed weights back, or delete that folder to retrain it")
    ds = protocol_data(protocol, ds)
    extra = {"teacher": teacher, "teacher_seed": teacher_seed,
             "teacher_sha256": {k: info["sha256"] for k, (_, info) in teachers.items()}}
    if init is not None:
        extra["init_from"] = {"run": init.name, "sha256": file_sha256(init / "student.pt")}
    run = RunDir(path, _identity(protocol, ds, method, seed, **extra), environment(opts.device, opts.bf16),
                 ds.provenance, opts.allow_env_change).open()
    try:
        elapsed = stopwatch("other_")
        torch.manual_seed(seed)
        student = build_model(protocol.student_arch)
        if init is not None:
            student.load_state_dict(torch.load(init / "student.pt", weights_only=True, map_location="cpu"))
        t_model = teachers[teacher][0] if teacher else None
        distiller = build_distiller(spec, student, t_model, extras_init=protocol.extras_init)
        trainer = Trainer(distiller, spec, protocol, to_device(ds, opts.device),
                          epochs=protocol.epochs_of(method), seed=seed, device=opts.device, augment=protocol.augment,
                          teacher_cache=opts.teacher_cache, cache_share=opts.cache_share, bf16=opts.bf16,
                          pid_teachers={k: m for k, (m, _) in teachers.items()}, pid_seed=seed,
                          tap_cache=TapCache(opts.tap_cache, run.env) if opts.tap_cache else None, log=opts.log)
        # The teacher cache, when it is built: outside the epochs' seconds.
        setup = elapsed()
        summary = {**_fit(run, trainer, protocol, opts, path.name, pid=True), **setup}
        state = {k: v.detach().cpu().contiguous() for k, v in trainer.distiller.student.state_dict().items()}
        atomic_torch_save(state, path / "student.pt")
        run.finish(summary)
    finally:
        run.close()
    return summary


def stopwatch(prefix=""):
    """Start timing; the returned function gives the wall seconds and this process's CPU seconds since then, as
    {prefix}seconds and {prefix}cpu_seconds. The CPU time is a run's cost on a machine shared with other work,
    where the wall seconds also count the time it waited for a core (ridrepro.results.run_core_hours)."""
    start, cpu = time.perf_counter(), time.process_time()
    return lambda: {f"{prefix}seconds": time.perf_counter() - start, f"{prefix}cpu_seconds": time.process_time() - cpu}


def _fit(run, trainer, protocol, opts, name, pid):
    """The epoch loop with logging and checkpoints; resumes from the folder's checkpoint."""
    ckpt = run.load_checkpoint()
    if ckpt is not None:
        trainer.load_state_dict(ckpt["trainer"])
        run.truncate("metrics.jsonl", ckpt["metrics_lines"])
        run.truncate("pid.jsonl", ckpt["pid_lines"])
        opts.log(f"{name}: resuming after epoch {trainer.epoch}")
    else:
        run.truncate("metrics.jsonl", 0)
        run.truncate("pid.jsonl", 0)
    bar = None
    if opts.progress:
        from tqdm import tqdm
        steps = -(-len(trainer.data.train_y) // protocol.batch_size)
        bar = tqdm(total=trainer.epochs * steps, initial=trainer.epoch * steps, desc=name, unit="step",
                   dynamic_ncols=True, disable=None)
    try:
        while trainer.epoch < trainer.epochs:
            elapsed = stopwatch()
            rec = trainer.train_epoch(bar)
            epoch = rec["epoch"]
            do_pid = pid and epoch in protocol.pid_epochs and bool(trainer.pid_teachers)
            if trainer.evaluates(epoch):
                metrics, taps = trainer.evaluate_with_taps(protocol.pid_layer if do_pid else None)
                rec.update(metrics)
                if do_pid:
                    for p in trainer.pid(taps):
                        run.append("pid.jsonl", p)
                    if protocol.store_pca:
                        _store_pca(run.path, trainer, taps, epoch, protocol.store_pca)
            rec.update(elapsed())
            run.append("metrics.jsonl", rec)
            if bar is not None and "test_acc" in rec:
                bar.set_postfix(phase=rec["phase"], test_acc=f"{rec['test_acc']:.3f}")
            run.save_checkpoint({"trainer": trainer.state_dict(), "phase": rec["phase"], "cycle": rec["cycle"],
                                 "metrics_lines": len(run.lines("metrics.jsonl")),
                                 "pid_lines": len(run.lines("pid.jsonl"))})
    finally:
        if bar is not None:
            bar.close()
    records = [json.loads(line) for line in run.lines("metrics.jsonl")]
    accs = [r["test_acc"] for r in records if "test_acc" in r]
    last10 = [r["test_acc"] for r in records[-10:] if "test_acc" in r]  # the evaluated ones among the last ten
    return {"epochs": len(records), "final_acc": accs[-1] if accs else None, "best_acc": max(accs, default=None),
            "last10_acc": sum(last10) / len(last10) if last10 else None,
            "teacher_cache": trainer.cache_reason if trainer.distiller.uses_teacher else None}
