"""The `ridrepro` command: one entry, each subsystem's subcommands imported only when one of them runs, so the
command line starts fast and without the analysis stack (pandas) on bare GPU nodes."""

import argparse
import importlib
import os
import sys

from ridrepro import __version__

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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = parser_for(command).parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("RIDREPRO_DEBUG"):
            raise
        print(f"ridrepro {args.command}: error: {err}", file=sys.stderr)  # bad input: one line, no traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
