"""Command line for training: `ridrepro teacher | distil | grid`. Run folders: ridrepro.layout."""

import argparse
import json
import os
import sys

import torch

from ridrepro.argtypes import JOBS, THREADS, float_at_least, seed, seeds_option
from ridrepro.layout import DEFAULT_RUNS, METHODS, TEACHER_KINDS, Run
from ridrepro.protocols import PROTOCOLS, get_protocol
from ridrepro.train.grid import run_local
from ridrepro.train.runs import Options, distil, ensure_teacher
from ridrepro.train.store import ALLOW_ENV_FLAG


def device(text):
    """type= for --device: auto, cpu, cuda or cuda:N, checked before any work starts (whether this machine has that
    CUDA device is not: a Ray grid's driver may name its workers' GPUs)."""
    if text == "auto":
        return text
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: choose cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: choose cpu, cuda, cuda:N or auto")
    return text


def _common(p):
    p.add_argument("--protocol", required=True, choices=list(PROTOCOLS), help="hyperparameter set (ridrepro.protocols)")
    p.add_argument("--runs", default=DEFAULT_RUNS, help=f"root folder of run folders (default: ./{DEFAULT_RUNS})")
    p.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    p.add_argument("--synthetic", action="store_true",
                   help="use a small seeded synthetic data set instead of CIFAR-10 (tests and demos only)")
    p.add_argument("--device", type=device, default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=THREADS, help="CPU threads for torch, >= 1 (default: torch's choice)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--teacher-cache", default="auto", choices=["auto", "on", "off"],
                   help="precompute the frozen teacher's taps once when augmentation is off (default auto)")
    p.add_argument("--tap-cache", metavar="DIR",
                   help="keep frozen teachers' taps in DIR, shared by the cells of a grid (ridrepro.train.tapcache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (also when $CI is set or not a terminal); "
                                                        "a line per epoch instead")
    p.add_argument(ALLOW_ENV_FLAG, action="store_true", dest="allow_env_change",
                   help="resume an unfinished run on another device type (cpu/cuda) or bf16 setting than it started "
                        "with (recorded in its config.json under resumed_in; the result then mixes both settings)")
    p.add_argument("--cache-share", type=float, default=0.5, help=argparse.SUPPRESS)  # set by grid --jobs


def add_commands(sub):
    p = sub.add_parser("teacher", help="train (tt) or initialise (ut) a teacher: <runs>/<protocol>/teacher-<kind>-s<seed>/")
    _common(p)
    p.add_argument("--kind", required=True, choices=TEACHER_KINDS, help="tt: trained with the protocol's recipe; ut: untrained")
    p.add_argument("--seed", type=seed, default=0, help="the teacher's seed, 0 <= seed < 2**31 (default 0)")
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("distil", help="run one grid cell to completion (creating its teachers if needed); "
                                      "resumes an interrupted run, skips a finished one")
    _common(p)
    p.add_argument("--method", required=True, choices=METHODS, help="the distillation method (bas: no teacher)")
    p.add_argument("--teacher", choices=TEACHER_KINDS, help="tt or ut (not for bas)")
    p.add_argument("--seed", type=seed, default=0, help="the student's seed, 0 <= seed < 2**31 (default 0)")
    p.add_argument("--teacher-seed", type=seed, default=0, help="which teacher-<kind>-s<N> to distil from (default 0)")
    p.set_defaults(func=cmd_distil)

    p = sub.add_parser("grid", help="run a protocol's whole grid: teachers tt/ut, BAS, VID/RID/TED x tt/ut, "
                                    "for each seed; skips finished runs and resumes partial ones")
    _common(p)
    seeds_option(p, "--seeds", default=[0, 1, 2], help="student seeds, each 0 <= seed < 2**31; duplicates are merged "
                                                       "(default 0 1 2)")
    p.add_argument("--methods", nargs="+", choices=METHODS, help="default: every method of the protocol")
    p.add_argument("--jobs", type=JOBS, help="local backend: cells run side by side as separate processes, >= 1 "
                                             "(default 1)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local (default): subprocesses on this machine; ray: each cell a Ray task (ridrepro.train.grid_ray)")
    p.add_argument("--address", help="ray backend: the Ray cluster to connect to, e.g. 10.0.0.1:6379 or auto "
                                     "(default: start a local one)")
    p.add_argument("--gpus-per-cell", type=float_at_least(0, "GPUs per cell"),
                   help="ray backend: GPUs each cell reserves, >= 0, may be fractional (default 0)")
    p.add_argument("--cpus-per-cell", type=float_at_least(0, "CPUs per cell", strict=True),
                   help="ray backend: CPUs each cell reserves, > 0; its thread count unless --threads is given (default 1)")
    p.set_defaults(func=cmd_grid)


# ----------------------------------------------------------------------------- helpers

def _log(*parts):
    print(*parts, flush=True)  # flushed: a grid's cell logs to a file, one line per epoch


def _setup(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    progress = not args.quiet and not os.environ.get("CI") and sys.stderr.isatty()
    return get_protocol(args.protocol), Options(args.runs, device, args.teacher_cache, args.bf16, progress, _log,
                                                allow_env_change=args.allow_env_change, cache_share=args.cache_share,
                                                tap_cache=args.tap_cache)


def _dataset(args):
    from ridrepro.data import load_cifar10, synthetic_cifar
    return synthetic_cifar() if args.synthetic else load_cifar10(args.data)


def cmd_teacher(args):
    protocol, opts = _setup(args)
    _, info = ensure_teacher(protocol, _dataset(args), args.kind, args.seed, opts)
    print(json.dumps(info))
    return 0


def cmd_distil(args):
    protocol, opts = _setup(args)
    Run(args.method, args.seed, args.teacher, args.teacher_seed)  # a name the run can have, before the data load
    summary = distil(protocol, _dataset(args), args.method, args.seed, args.teacher, args.teacher_seed, opts)
    print(json.dumps(summary))
    return 0


def cmd_grid(args):
    if args.backend == "ray":
        from ridrepro.train.grid_ray import run_grid  # Ray is needed only here: training starts without it
        return run_grid(args)
    ray_only = [f for f, v in (("--address", args.address), ("--gpus-per-cell", args.gpus_per_cell),
                               ("--cpus-per-cell", args.cpus_per_cell)) if v is not None]
    if ray_only:
        raise ValueError(f"{', '.join(ray_only)}: only with --backend ray")
    args.jobs = args.jobs or 1
    protocol, opts = _setup(args)
    return run_local(args, protocol, opts)
