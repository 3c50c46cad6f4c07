"""A protocol's grid: which runs it has, in which order, with which dependencies, and the local backend
that runs them as subprocesses (ridrepro.train.grid_ray runs the same tasks on Ray)."""

import os
import subprocess
import sys
import time
from pathlib import Path

from ridrepro.layout import METHODS, Run, teacher_dir
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


def run_local(args, protocol, opts):
    """The local backend: each cell a `python -m ridrepro` subprocess, at most args.jobs at a time."""
    root = Path(args.runs)
    tasks = grid_tasks(protocol, args.seeds, grid_methods(protocol, args.methods), root)
    done = {n for n, _, folder, _ in tasks if (folder / "finished.json").exists()}
    failed, running, pending = set(), {}, [t for t in tasks if t[0] not in done]
    print(f"grid {protocol.name}: {len(tasks)} runs, {len(done)} finished, {len(pending)} to run, jobs {args.jobs}")
    shared = cell_args(args, root, opts.device, side_by_side=args.jobs)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    logs = root / protocol.name / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.time()
    while pending or running:
        for task in list(pending):
            name, argv, folder, deps = task
            if any(d in failed for d in deps):
                pending.remove(task)
                failed.add(name)
                print(f"skip {name}: a dependency failed")
            elif len(running) < args.jobs and all(d in done for d in deps):
                pending.remove(task)
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                log = open(logs / f"{name}.log", "a")
                cmd = [sys.executable, "-m", "ridrepro", *argv, *shared, "--threads", str(threads)]
                running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log, time.time())
                print(f"start {name} ({threads} threads) -> {logs / (name + '.log')}", flush=True)
        time.sleep(0.2)
        for name, (proc, log, t0) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                ok = proc.returncode == 0
                (done if ok else failed).add(name)
                print(f"{'done' if ok else 'FAILED'} {name} in {time.time() - t0:.0f} s"
                      f"{'' if ok else f' (exit {proc.returncode}; see its log)'}", flush=True)
    print(f"grid {protocol.name}: {len(done)} finished, {len(failed)} failed, {time.time() - start:.0f} s")
    return 1 if failed else 0
