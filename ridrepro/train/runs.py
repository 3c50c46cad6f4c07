"""One grid cell run to completion: its teachers ensured, the student trained epoch by epoch with logs and a
checkpoint after every epoch, resumable after any interruption. Folders: ridrepro.layout; files inside:
config.json (identity + environment), metrics.jsonl, pid.jsonl, checkpoint.pt, and once complete finished.json
and the weights (student.pt or teacher.pt)."""

import copy
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ridrepro.data import to_device
from ridrepro.files import (UserError, atomic_torch_save, file_sha256, load_torch, read_json, read_jsonl,
                            tensors_sha256)
from ridrepro.layout import TEACHER_KINDS, accuracy_of, student_dir, teacher_dir
from ridrepro.models import build_model
from ridrepro.models.forward import evaluate
from ridrepro.models.weights import load_teacher, save_teacher
from ridrepro.protocols import protocol_data, teacher_data
from ridrepro.train.engine import Trainer, build_distiller
from ridrepro.train.measure import Measure
from ridrepro.train.store import BIT_IDENTITY_KEYS, RunDir, environment, kernel_hint, recorded_environment
from ridrepro.train.tapcache import TapCache


class Options:
    """Execution options shared by every cell (not part of a run's identity)."""

    def __init__(self, root="runs", device="cpu", teacher_cache="auto", bf16=False, progress=False, log=print,
                 allow_env_change=False, cache_share=0.5, tap_cache=None):
        self.root, self.device, self.teacher_cache = Path(root), torch.device(device), teacher_cache
        self.bf16, self.progress, self.log = bf16, progress, log
        self.allow_env_change = allow_env_change  # resume on another device type or bf16 setting
        self.cache_share = cache_share  # of free memory the teacher cache may take (auto mode)
        self.tap_cache = tap_cache  # folder of teacher taps shared by the cells (ridrepro.train.tapcache), or None


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
    return asdict(obj)


def ensure_teacher(protocol, ds, kind, seed, opts):
    """Train (tt) or initialise (ut) a teacher unless it is finished; returns (model, info). A protocol that
    borrows another's teachers (protocols.BorrowedTeachers) only loads them and checks their pinned sha256."""
    path = teacher_dir(opts.root, protocol.teacher_home, kind, seed)
    if protocol.teacher_home != protocol.name:
        if not (path / "teacher.json").exists() or not (path / "teacher.pt").exists():
            raise FileNotFoundError(f"protocol {protocol.name} uses {protocol.teacher_home}'s committed teacher, "
                                    f"expected in {path}; use --runs results, or copy that folder into --runs")
        model, info = _load_teacher(path)
        protocol.check_teacher(kind, info)
        return model, info
    if (path / "teacher.json").exists():
        if not (path / "teacher.pt").exists():
            _rebuild_teacher_weights(protocol, ds, kind, seed, opts, path)
        return _load_teacher(path)
    if kind == "tt":
        print(teacher_notice(protocol, kind, seed, opts.root), file=sys.stderr, flush=True)
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
            _fit(run, trainer, protocol, opts, f"teacher-{kind}-s{seed}", Measure(protocol, data, {}, seed))
            model = trainer.distiller.student
        elapsed = stopwatch("other_")
        acc, _, _ = evaluate(model.to(opts.device), data.test_x, data.test_y, protocol.norm, protocol.eval_batch_size)
        info = save_teacher(path, model, protocol.teacher_arch, seed, kind, acc, protocol.name, init_seed)
        # other_seconds: the final float32 evaluation, outside the epochs' seconds (ridrepro.analysis.results.run_core_hours)
        run.finish({"test_acc": acc, "sha256": info["sha256"], **elapsed()})
        opts.log(f"teacher {kind} seed {seed}: test accuracy {acc:.4f}, sha256 {info['sha256'][:12]}")
    finally:
        run.close()
    return _load_teacher(path)


def _load_teacher(path):
    """load_teacher, with a damaged teacher.json or teacher.pt named together with the way out."""
    read_json(path / "teacher.json", f"put the committed teacher.json back, or delete {path} to train the teacher again")
    try:
        return load_teacher(path)
    except ValueError as err:  # teacher.pt does not match the sha256 in teacher.json
        raise UserError(f"{err}: put the committed teacher.pt back, or delete it to rebuild it from its run "
                        "(kept only if the sha256 matches)") from None


def teacher_seconds(protocol, kind="tt", seed=0):
    """The wall seconds per epoch measured for this protocol's committed teacher (results/), or None."""
    metrics = COMMITTED / protocol.teacher_home / f"teacher-{kind}-s{seed}" / "metrics.jsonl"
    try:
        seconds = [r["seconds"] for r in read_jsonl(metrics) if "seconds" in r]
    except (OSError, ValueError):
        return None
    return sum(seconds) / len(seconds) if seconds else None


def teacher_notice(protocol, kind, seed, root):
    """What training a teacher means, said before it starts: the epochs, the time the committed run took per
    epoch, and where the committed teacher is."""
    epochs, (depth, width, _) = protocol.epochs_of("teacher"), protocol.teacher_arch
    per_epoch = teacher_seconds(protocol, kind, seed)
    cost = (f"about {epochs * per_epoch / 3600:.1f} h at the {per_epoch:.0f} s per epoch its committed run took on 2 "
            "CPU cores" if per_epoch else "no committed run of this protocol to time it by")
    committed = COMMITTED / protocol.teacher_home / f"teacher-{kind}-s{seed}" / "teacher.json"
    shown = os.path.relpath(COMMITTED) if Path.cwd() in COMMITTED.parents else COMMITTED
    where = (f"; to use the committed teacher instead, stop (Ctrl-C) and pass --runs {shown}"
             if committed.exists() and Path(root).resolve() != COMMITTED else "")
    return (f"ridrepro: training teacher-{kind}-s{seed} of protocol {protocol.name} (WRN-{depth}-{width}, {epochs} "
            f"epochs) in {teacher_dir(root, protocol.teacher_home, kind, seed)}: {cost}{where}")


# The committed grids: results/ beside the package (a source checkout or an editable install).
COMMITTED = Path(__file__).resolve().parents[2] / "results"


def _rebuild_teacher_weights(protocol, ds, kind, seed, opts, path):
    """The fallback when a finished teacher's weights are missing (committed grids carry them). Training is
    bit-identical on the same CPU kernel path and thread count, so the weights are rebuilt in a scratch folder
    and kept only if their sha256 matches."""
    want = read_json(path / "teacher.json", f"delete {path} to train the teacher again")["sha256"]
    scratch = path.parent / f".rebuild-{path.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    opts.log(f"{path}: teacher.pt is missing; rebuilding it to match teacher.json")
    sub = copy.copy(opts)
    sub.root = scratch
    _, info = ensure_teacher(protocol, ds, kind, seed, sub)
    rebuilt = teacher_dir(scratch, protocol.name, kind, seed)
    if info["sha256"] != want:
        env = recorded_environment(read_json(path / "config.json", f"delete {path} to train the teacher again"))
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
    path = student_dir(opts.root, protocol.name, method, seed, teacher, teacher_seed)
    if (path / "finished.json").exists():
        summary = read_json(path / "finished.json", "delete it and re-run the same command: the run's last "
                                                    "checkpoint writes it again")
        opts.log(f"{path} is finished; not recomputed")
        return summary
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
            student.load_state_dict(load_torch(init / "student.pt", f"delete {init} to retrain it", weights_only=True))
        t_model = teachers[teacher][0] if teacher else None
        distiller = build_distiller(spec, student, t_model, extras_init=protocol.extras_init)
        data = to_device(ds, opts.device)
        taps = TapCache(opts.tap_cache, run.env) if opts.tap_cache else None
        trainer = Trainer(distiller, spec, protocol, data, epochs=protocol.epochs_of(method), seed=seed,
                          device=opts.device, augment=protocol.augment, teacher_cache=opts.teacher_cache,
                          cache_share=opts.cache_share, bf16=opts.bf16, tap_cache=taps, log=opts.log)
        measure = Measure(protocol, data, {k: m for k, (m, _) in teachers.items()}, seed, taps)
        # The teacher cache, when it is built: outside the epochs' seconds.
        setup = elapsed()
        summary = {**_fit(run, trainer, protocol, opts, path.name, measure), **setup}
        state = {k: v.detach().cpu().contiguous() for k, v in trainer.distiller.student.state_dict().items()}
        atomic_torch_save(state, path / "student.pt")
        run.finish(summary)
    finally:
        run.close()
    return summary


def stopwatch(prefix=""):
    """Start timing; the returned function gives the wall seconds and this process's CPU seconds since then, as
    {prefix}seconds and {prefix}cpu_seconds. The CPU time is a run's cost on a machine shared with other work,
    where the wall seconds also count the time it waited for a core (ridrepro.analysis.results.run_core_hours)."""
    start, cpu = time.perf_counter(), time.process_time()
    return lambda: {f"{prefix}seconds": time.perf_counter() - start, f"{prefix}cpu_seconds": time.process_time() - cpu}


def _fit(run, trainer, protocol, opts, name, measure):
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
    saved = trainer.epoch  # the epoch the folder's checkpoint holds
    bar = None
    if opts.progress:
        from tqdm import tqdm
        steps = trainer.steps_per_epoch
        bar = tqdm(total=trainer.epochs * steps, initial=trainer.epoch * steps, desc=name, unit="step",
                   dynamic_ncols=True, disable=None)
    try:
        while trainer.epoch < trainer.epochs:
            elapsed = stopwatch()
            rec = trainer.train_epoch(bar)
            epoch = rec["epoch"]
            measured = measure.due(epoch)
            if trainer.evaluates(epoch) or measured:
                metrics, taps = trainer.evaluate_with_taps(protocol.pid_layer if measured else None)
                rec.update(metrics)
                if measured:
                    for p in measure.pid(epoch, taps):
                        run.append("pid.jsonl", p)
                    if protocol.store_pca:
                        measure.store_pca(run.path, epoch, taps)
            rec.update(elapsed())
            run.append("metrics.jsonl", rec)
            if bar is not None and "test_acc" in rec:
                bar.set_postfix(phase=rec["phase"], test_acc=f"{rec['test_acc']:.3f}")
            run.save_checkpoint({"trainer": trainer.state_dict(), "phase": rec["phase"], "cycle": rec["cycle"],
                                 "metrics_lines": len(run.lines("metrics.jsonl")),
                                 "pid_lines": len(run.lines("pid.jsonl"))})
            saved = epoch
            if bar is None:  # no terminal (a grid's log, CI): one line per epoch instead of the bar
                acc = f", test accuracy {rec['test_acc']:.4f}" if "test_acc" in rec else ""
                opts.log(f"{name}: epoch {epoch}/{trainer.epochs}{acc}, {rec['seconds']:.0f} s")
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (ridrepro.cli): say where a re-run resumes
        err.resume = f"{name}, epoch {saved}" if saved else None
        raise
    finally:
        if bar is not None:
            bar.close()
    records = read_jsonl(run.path / "metrics.jsonl")
    acc = accuracy_of(records)
    return {"epochs": len(records), "final_acc": acc["final"], "best_acc": acc["best"], "last10_acc": acc["tail"],
            "teacher_cache": trainer.cache_reason if trainer.distiller.uses_teacher else None}
