"""Command line for training: `ridrepro teacher | distil | grid | summary`.

Run folders live under --runs (default ./runs) as <runs>/<protocol>/<cell>-s<seed>/, where a cell is
teacher-tt, teacher-ut, bas, or <vid|rid|ted>-<tt|ut>; see ridrepro.runs for the files inside.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from ridrepro.protocols import PROTOCOLS, get_protocol
from ridrepro.runs import ALLOW_ENV_FLAG, TEACHER_KINDS, Options, distil, ensure_teacher, student_dir, teacher_dir

METHODS = ("bas", "vid", "rid", "ted", "cifd")  # each protocol offers some of them (Protocol.methods)


def _common(p):
    p.add_argument("--protocol", required=True, choices=list(PROTOCOLS), help="hyperparameter set (ridrepro.protocols)")
    p.add_argument("--runs", default="runs", help="root folder of run folders (default: ./runs)")
    p.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    p.add_argument("--synthetic", action="store_true",
                   help="use a small seeded synthetic data set instead of CIFAR-10 (tests and demos only)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--teacher-cache", default="auto", choices=["auto", "on", "off"],
                   help="precompute the frozen teacher's taps once when augmentation is off (default auto)")
    p.add_argument("--tap-cache", metavar="DIR",
                   help="keep frozen teachers' taps in DIR, shared by the cells of a grid (ridrepro.tapcache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (also when $CI is set or not a terminal)")
    p.add_argument(ALLOW_ENV_FLAG, action="store_true", dest="allow_env_change",
                   help="resume an unfinished run on another device type (cpu/cuda) or bf16 setting than it started "
                        "with (recorded in its config.json under resumed_in; the result then mixes both settings)")
    p.add_argument("--cache-share", type=float, default=0.5, help=argparse.SUPPRESS)  # set by grid --jobs


def add_commands(sub):
    p = sub.add_parser("teacher", help="train (tt) or initialise (ut) a teacher: <runs>/<protocol>/teacher-<kind>-s<seed>/")
    _common(p)
    p.add_argument("--kind", required=True, choices=TEACHER_KINDS, help="tt: trained with the protocol's recipe; ut: untrained")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("distil", help="run one grid cell to completion (creating its teachers if needed); "
                                      "resumes an interrupted run, skips a finished one")
    _common(p)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--teacher", choices=TEACHER_KINDS, help="tt or ut (not for bas)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-seed", type=int, default=0, help="which teacher-<kind>-s<N> to distil from (default 0)")
    p.set_defaults(func=cmd_distil)

    p = sub.add_parser("grid", help="run a protocol's whole grid: teachers tt/ut, BAS, VID/RID/TED x tt/ut, "
                                    "for each seed; skips finished runs and resumes partial ones")
    _common(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", choices=METHODS, help="default: every method of the protocol")
    p.add_argument("--jobs", type=int, help="local backend: cells run side by side as separate processes (default 1)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local (default): subprocesses on this machine; ray: each cell a Ray task (ridrepro.grid_ray)")
    p.add_argument("--address", help="ray backend: the Ray cluster to connect to, e.g. 10.0.0.1:6379 or auto "
                                     "(default: start a local one)")
    p.add_argument("--gpus-per-cell", type=float, help="ray backend: GPUs each cell reserves, may be fractional (default 0)")
    p.add_argument("--cpus-per-cell", type=float, help="ray backend: CPUs each cell reserves; its thread count "
                                                       "unless --threads is given (default 1)")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("summary", help="table of a grid: final, best and mean-of-last-10 test accuracy, "
                                       "mean and std over seeds")
    p.add_argument("--protocol", required=True)
    p.add_argument("--runs", default="runs")
    p.add_argument("--format", choices=["markdown", "csv", "json"], default="markdown")
    p.set_defaults(func=cmd_summary)


# ----------------------------------------------------------------------------- helpers

def _setup(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    progress = not args.quiet and not os.environ.get("CI") and sys.stderr.isatty()
    return get_protocol(args.protocol), Options(args.runs, device, args.teacher_cache, args.bf16, progress,
                                                allow_env_change=args.allow_env_change, cache_share=args.cache_share,
                                                tap_cache=args.tap_cache)


def _dataset(args):
    if args.synthetic:
        return synthetic_cifar()
    from ridrepro.data import load_cifar10
    return load_cifar10(args.data)


def synthetic_cifar(train_per_class=60, test_per_class=20, seed=0):
    """Random images with a learnable class signal (a coloured corner patch); clearly labelled in provenance."""
    from ridrepro.data import CIFAR10
    g = torch.Generator().manual_seed(seed)
    parts = []
    for n in (train_per_class, test_per_class):
        y = torch.arange(10).repeat_interleave(n)
        x = (torch.rand(len(y), 3, 32, 32, generator=g) * 255).to(torch.uint8)
        x[:, :, :8, :8] = (y * 25).to(torch.uint8)[:, None, None, None]
        parts += [x, y]
    return CIFAR10(*parts, provenance={"kind": "synthetic", "seed": seed,
                                       "per_class": [train_per_class, test_per_class]})


def cmd_teacher(args):
    protocol, opts = _setup(args)
    _, info = ensure_teacher(protocol, _dataset(args), args.kind, args.seed, opts)
    print(json.dumps(info))
    return 0


def cmd_distil(args):
    protocol, opts = _setup(args)
    if args.method == "bas" and args.teacher:
        raise ValueError("bas has no teacher; leave --teacher out")
    if args.method != "bas" and not args.teacher:
        raise ValueError(f"--teacher tt or ut is required for {args.method}")
    summary = distil(protocol, _dataset(args), args.method, args.seed, args.teacher, args.teacher_seed, opts)
    print(json.dumps(summary))
    return 0


# ----------------------------------------------------------------------------- grid

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
            name = f"{method}-s{seed}" if t is None else f"{method}-{t}-s{seed}"
            argv = ["distil", "--method", method, "--seed", str(seed)] + (["--teacher", t] if t else [])
            tasks.append((name, argv, student_dir(root, protocol.name, method, seed, t), deps))
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


def cmd_grid(args):
    if args.backend == "ray":
        from ridrepro.grid_ray import run_grid  # Ray is needed only here: training starts without it
        return run_grid(args)
    ray_only = [f for f, v in (("--address", args.address), ("--gpus-per-cell", args.gpus_per_cell),
                               ("--cpus-per-cell", args.cpus_per_cell)) if v is not None]
    if ray_only:
        raise ValueError(f"{', '.join(ray_only)}: only with --backend ray")
    args.jobs = args.jobs or 1
    protocol, opts = _setup(args)
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


# ----------------------------------------------------------------------------- summary

def cmd_summary(args):
    # pandas is imported here, not at the top: training runs on bare GPU nodes that lack it.
    from ridrepro.results import accuracy_summary

    table = accuracy_summary(args.runs, args.protocol)
    cols = [f"{c}{suffix}" for c in ("final", "best", "last10", "change") for suffix in ("", "_std")]
    if args.format == "json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        print(json.dumps(records, indent=2, default=int))
    elif args.format == "csv":
        print(table[["cell", "seeds", "finished", *cols, "core_hours"]].to_csv(index=False), end="")
    else:
        # m != m: NaN. A value from one run has no spread (s is NaN), so it prints alone.
        fmt = lambda m, s: "-" if m != m else f"{m:.4f}" if s != s else f"{m:.4f} ± {s:.4f}"  # noqa: E731
        print("| cell | seeds (finished) | final | best | mean of last 10 | change over last 20 % | core-hours |\n"
              "|---|---|---|---|---|---|---|")
        for r in table.itertuples():
            print(f"| {r.cell} | {r.seeds} ({r.finished}) | " + " | ".join(
                fmt(getattr(r, c), getattr(r, c + "_std")) for c in ("final", "best", "last10", "change"))
                + f" | {r.core_hours:.2f} |")
        print(f"| all | {table.seeds.sum()} ({table.finished.sum()}) | | | | | {table.core_hours.sum():.2f} |")
    return 0
