"""Numeric command-line options checked when they are parsed, before any work starts or any folder is made.

Each helper is an argparse `type=` (or, for seed lists, an action): a bad value stops the command with argparse's
own one-line error naming the option, the value and the accepted range, e.g.
`ridrepro distil: error: argument --seed: invalid value -1: a seed must be 0 <= seed < 2**31`.
"""

import argparse
import math
import sys

SEED_LIMIT = 2**31  # numpy's and scikit-learn's random_state accept 0 <= seed < 2**32; torch more. The common range.


def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not {'an integer' if kind is int else 'a number'}")
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not a finite number")
    return value


def int_at_least(low, what="the value"):
    """type= for an integer >= low."""
    def parse(text):
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"invalid value {value}: {what} must be >= {low}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def float_at_least(low, what="the value", strict=False):
    """type= for a finite number >= low (> low with strict)."""
    def parse(text):
        value = _number(text, float)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"invalid value {text}: {what} must be {'>' if strict else '>='} {low:g}")
        return value
    parse.__name__ = f"number {'>' if strict else '>='} {low:g}"
    return parse


def seed(text):
    """type= for a random seed: 0 <= seed < 2**31."""
    value = _number(text, int)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"invalid value {value}: a seed must be 0 <= seed < 2**31")
    return value


class UniqueSeeds(argparse.Action):
    """nargs="+" seeds with duplicates merged (in first-seen order) and a note on stderr: `--seeds 1 1` runs
    seed 1 once, instead of starting the same cell twice."""

    def __call__(self, parser, namespace, values, option_string=None):
        unique = list(dict.fromkeys(values))
        if len(unique) < len(values):
            print(f"note: {option_string} {' '.join(map(str, values))}: duplicates merged, "
                  f"seeds {' '.join(map(str, unique))}", file=sys.stderr)
        setattr(namespace, self.dest, unique)


def seeds_option(parser, *flags, **kwargs):
    """Add a list-of-seeds option (--seeds): each seed checked, duplicates merged."""
    return parser.add_argument(*flags, type=seed, nargs="+", action=UniqueSeeds, **kwargs)


POSITIVE = int_at_least(1)  # jobs, threads, pca components, clusters, images
NON_NEGATIVE = int_at_least(0)  # bootstrap resamples, null repetitions
THREADS = int_at_least(1, "a thread count")
JOBS = int_at_least(1, "the number of cells side by side")
