"""The `ridrepro` command. Each subsystem registers its own subcommands, so this file stays short."""

import argparse
import importlib
import sys

# Modules exposing add_commands(subparsers); each subcommand sets `func` and returns an exit code.
SUBSYSTEMS = ["ridrepro.data", "ridrepro.train_cli", "ridrepro.pid.cli", "ridrepro.probes_grid"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ridrepro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBSYSTEMS:
        importlib.import_module(name).add_commands(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError) as err:
        # Bad input is reported as one clear line, not a traceback.
        print(f"ridrepro {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
