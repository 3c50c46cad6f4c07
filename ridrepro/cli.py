"""The `ridrepro` command: one entry, each subsystem's subcommands imported only when one of them runs, so the
command line starts fast and without the analysis stack (pandas) on bare GPU nodes.

Exit codes: 0 done; 1 a grid with failed cells; 2 bad input or a damaged or unwritable file (one line, no
traceback; RIDREPRO_DEBUG=1 shows it); 75 the run is in use by another process; 130 interrupted (Ctrl-C), 143
terminated (SIGTERM): locks released, temporary files removed, and re-running the same command resumes."""

import argparse
import importlib
import os
import signal
import sys

from ridrepro import __version__
from ridrepro.files import unwritable

# command -> (module with add_commands(subparsers), one-line help for `ridrepro --help`)
COMMANDS = {
    "data": ("ridrepro.data", "load CIFAR-10 (decode once, cache) and print what was loaded"),
    "teacher": ("ridrepro.train.cli", "train (tt) or initialise (ut) a teacher"),
    "distil": ("ridrepro.train.cli", "run one grid cell to completion; resumes an interrupted run"),
    "grid": ("ridrepro.train.cli", "run a protocol's whole grid; skips finished runs, resumes partial ones"),
    "summary": ("ridrepro.analysis.cli", "accuracy table of a grid"),
    "probes": ("ridrepro.analysis.cli", "Ojha et al.'s probes on a grid's finished runs"),
    "rdm-curves": ("ridrepro.analysis.cli", "CIFD's RDM rate-distortion curves for a grid's teachers"),
    "sensitivity": ("ridrepro.analysis.cli", "atoms under other PID estimator settings, from stored features"),
    "intervals": ("ridrepro.analysis.cli", "combined PID intervals of a grid's records, from stored features"),
    "findings": ("ridrepro.analysis.findings", "every claim the book tests: verdict, evidence, cost"),
    "pid": ("ridrepro.pid.cli", "BROJA partial information decomposition of a joint table or of features"),
}


def parser_for(command):
    """The argument parser, with the full options of `command`'s module and one-line entries for the rest."""
    parser = argparse.ArgumentParser(prog="ridrepro", description=__doc__.split(":")[0] + ".")
    parser.add_argument("--version", action="version", version=f"ridrepro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    module = COMMANDS[command][0] if command in COMMANDS else None
    for name, (mod, help) in COMMANDS.items():
        if mod == module:
            importlib.import_module(mod).add_commands(sub)
            module = None  # its commands are registered now
        elif name not in sub.choices:
            sub.add_parser(name, help=help)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds like Ctrl-C: `finally` blocks release run locks and
    remove temporary files."""


def _stop(signum, frame):
    """The first SIGINT or SIGTERM stops the command; later ones are ignored, so that they cannot cut short the
    clean-up they asked for (a grid stopping its cells, a cell releasing its lock)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = parser_for(command).parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress reaches a log file or pipe as it happens
    # (a SIGINT ignored by the caller, as in a shell's background job, stays ignored)
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        return args.func(args) or 0
    except KeyboardInterrupt as err:
        if os.environ.get("RIDREPRO_DEBUG"):
            raise
        # err.resume: "<run>, epoch N", set by the epoch loop (ridrepro.train.runs) from the last checkpoint
        where = f" from the last checkpoint ({err.resume})" if getattr(err, "resume", None) else ""
        print(f"ridrepro {args.command}: {'terminated' if isinstance(err, Terminated) else 'interrupted'}; "
              f"re-run the same command to resume{where}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except (ValueError, OSError) as err:  # UserError is a ValueError
        if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
            err = unwritable(err.filename, err)  # a read-only or full destination; any other OSError is a bug
        if os.environ.get("RIDREPRO_DEBUG") or isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
            raise
        print(f"ridrepro {args.command}: error: {err}", file=sys.stderr)  # one line, no traceback
        return getattr(err, "exit_code", 2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
