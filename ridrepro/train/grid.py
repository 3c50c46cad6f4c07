"""A protocol's grid: which runs it has, in which order, with which dependencies, and the local backend
that runs them as subprocesses (ridrepro.train.grid_ray runs the same tasks on Ray)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ridrepro.files import RunLocked, file_sha256
from ridrepro.layout import METHODS, Run, teacher_dir
from ridrepro.train.runs import teacher_notice
from ridrepro.train.store import ALLOW_ENV_FLAG


def grid_methods(protocol, methods=None):
    """The methods of a grid: those asked for, or every method of the protocol (in METHODS order)."""
    return list(methods) if methods else [m for m in METHODS if m in protocol.methods]


def grid_tasks(protocol, seeds, methods, root):
    """(name, argv, folder, dependencies) in the order they should start."""
    tasks = []
    for kind in ("tt", "ut"):  # the trained teacher first: it is the longest task
        tasks.append((f"teacher-{kind}", ["teacher", "--kind", kind, "--seed", "0"],
                      teacher_dir(root, protocol.teacher_home, kind, 0), []))
    cells = [(m, t) for t in ("ut", "tt") for m in methods if m != "bas"]
    if "bas" in methods:
        cells.insert(0, ("bas", None))
    for seed in seeds:
        for method, t in cells:
            deps = ["teacher-tt", "teacher-ut"] if t is None else [f"teacher-{t}"]
            init = protocol.method(method).init_from
            if init in methods:  # otherwise the cell makes that run itself, as distil does
                deps.append(f"{init}-s{seed}")
            run = Run(method, seed, t)
            argv = ["distil", "--method", method, "--seed", str(seed)] + (["--teacher", t] if t else [])
            tasks.append((run.name, argv, run.folder(root, protocol.name), deps))
    # Cells whose teacher is ready early (ut, and BAS after both) go before the tt cells.
    return sorted(tasks, key=lambda task: 0 if task[0].startswith("teacher") else 1 if "-tt-" not in task[0] else 2)


def cell_args(args, root, device, side_by_side):
    """The options every cell's `python -m ridrepro ...` gets, whichever backend starts it.

    side_by_side: how many cells may share one machine's (or GPU's) memory; each checks the free memory for
    its teacher cache at the same moment, so each may plan on only its share of it.
    """
    return ["--protocol", args.protocol, "--runs", str(root), "--device", str(device), "--quiet",
            "--teacher-cache", args.teacher_cache] + (["--data", args.data] if args.data else []) \
        + (["--synthetic"] if args.synthetic else []) + (["--bf16"] if args.bf16 else []) \
        + (["--tap-cache", args.tap_cache] if args.tap_cache else []) \
        + ([ALLOW_ENV_FLAG] if args.allow_env_change else []) \
        + ["--cache-share", str(args.cache_share / side_by_side)]


def is_finished(name, folder):
    """A run is finished when its finished.json exists and, for a teacher, its teacher.pt matches the sha256 in
    its teacher.json (a teacher whose weights do not match its record is not counted: its task then says why)."""
    if not (folder / "finished.json").exists():
        return False
    if not name.startswith("teacher"):
        return True
    try:
        return file_sha256(folder / "teacher.pt") == json.loads((folder / "teacher.json").read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _pdeathsig():
    """In a cell's process: receive SIGTERM when the grid driver dies, even by SIGKILL (Linux), so that no cell
    outlives it holding its run's lock."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_cells(running, timeout=120):
    """SIGTERM every running cell and wait for it: each releases its lock and removes its temporary files
    (ridrepro.cli turns SIGTERM into a clean stop); one that does not stop within `timeout` seconds is killed."""
    for proc, *_ in running.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.time() + timeout
    for name, (proc, log, _) in running.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        print(f"stopped {name} (exit {proc.returncode})", flush=True)


def run_local(args, protocol, opts):
    """The local backend: each cell a `python -m ridrepro` subprocess, at most args.jobs at a time. Ctrl-C or
    SIGTERM to the driver stops the running cells cleanly (stop_cells) before the driver exits."""
    root = Path(args.runs)
    tasks = grid_tasks(protocol, args.seeds, grid_methods(protocol, args.methods), root)
    done = {n for n, _, folder, _ in tasks if is_finished(n, folder)}
    failed, busy, running, pending = set(), set(), {}, [t for t in tasks if t[0] not in done]
    print(f"grid {protocol.name}: {len(tasks)} runs, {len(done)} finished, {len(pending)} to run, jobs {args.jobs}")
    for name, _, folder, _ in pending:
        if name.startswith("teacher-tt"):
            print(teacher_notice(protocol, "tt", 0, root), file=sys.stderr, flush=True)
    shared = cell_args(args, root, opts.device, side_by_side=args.jobs)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    logs = root / protocol.name / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.time()
    try:
        while pending or running:
            for task in list(pending):
                name, argv, folder, deps = task
                if any(d in failed or d in busy for d in deps):
                    pending.remove(task)
                    failed.add(name)
                    print(f"skip {name}: a dependency failed or is in use elsewhere")
                elif len(running) < args.jobs and all(d in done for d in deps):
                    pending.remove(task)
                    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                    log = open(logs / f"{name}.log", "a")
                    cmd = [sys.executable, "-m", "ridrepro", *argv, *shared, "--threads", str(threads)]
                    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_pdeathsig)
                    running[name] = (proc, log, time.time())
                    print(f"start {name} ({threads} threads) -> {logs / (name + '.log')}", flush=True)
            time.sleep(0.2)
            for name, (proc, log, t0) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    del running[name]
                    code = proc.returncode
                    if code == RunLocked.exit_code:  # lost the race for its folder to another process
                        busy.add(name)
                        print(f"BUSY {name}: in use by another process, not run here (see its log)", flush=True)
                        continue
                    (done if code == 0 else failed).add(name)
                    print(f"{'done' if code == 0 else 'FAILED'} {name} in {time.time() - t0:.0f} s"
                          f"{'' if code == 0 else f' (exit {code}; see its log)'}", flush=True)
    except KeyboardInterrupt:
        print(f"grid {protocol.name}: stopping {len(running)} running cells", flush=True)
        stop_cells(running)
        raise
    print(f"grid {protocol.name}: {len(done)} finished, {len(failed)} failed, "
          + (f"{len(busy)} in use by another process, " if busy else "") + f"{time.time() - start:.0f} s")
    return 1 if failed or busy else 0
