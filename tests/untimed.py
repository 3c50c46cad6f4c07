"""The records of a run's .jsonl log without the fields that time it, which differ between two runs of the
same computation: how the resume and reproducibility tests compare logs."""

import json

TIMING = ("seconds", "cpu_seconds", "train_seconds", "images_per_s")


def records(path):
    """The JSON records of `path`, one per line, each without its TIMING fields."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]
