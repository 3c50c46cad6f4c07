"""BAS pilots that fix a protocol's student learning rate before any distilled student runs.

    python benchmarks/pilot_bas.py --protocol cpu-10k --lr-variant squared --out results/cpu-10k/pilots

BAS needs no teacher, so it can be piloted while the teacher trains. Each pilot trains the protocol's BAS
student (its data, epochs, batch, batch-norm updates, evaluation epochs) with one learning-rate variant, and
writes one JSON line per epoch to <out>/bas-<variant>-s<seed>.jsonl, and at the end how much the test accuracy
still moves over the last 20% of the optimiser steps (ridrepro.analysis.results.tail_change):

    squared    paper-code: LambdaLR returns lr * decay, so the effective rate is 0.05^2 = 0.0025 (divergence 1)
    unsquared  the paper's text: 0.05, x0.2 at the same milestones (1/2 and 2/3 of the epochs)
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from ridrepro.analysis.results import tail_change
from ridrepro.data import load_cifar10, to_device
from ridrepro.models import build_model
from ridrepro.protocols import get_protocol, protocol_data
from ridrepro.train.engine import Trainer, build_distiller
from ridrepro.train.store import environment


def variant(method, name):
    o = method.optim["student"]
    if name == "squared":
        return method
    if name == "unsquared":
        return replace(method, optim={"student": replace(o, schedule=replace(o.schedule, squared=False))})
    raise ValueError(f"unknown learning-rate variant {name!r}; choose squared or unsquared")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="cpu-10k")
    ap.add_argument("--lr-variant", required=True, choices=["squared", "unsquared"])
    ap.add_argument("--seed", type=int, default=100, help="pilot seeds stay apart from the grid's 0, 1, 2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    protocol = get_protocol(args.protocol)
    spec = variant(protocol.method("bas"), args.lr_variant)
    ds = protocol_data(protocol, load_cifar10())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bas-{args.lr_variant}-s{args.seed}.jsonl"
    if path.exists():
        raise FileExistsError(f"{path} exists; pilots are not overwritten")
    torch.manual_seed(args.seed)
    distiller = build_distiller(spec, build_model(protocol.student_arch), extras_init=protocol.extras_init)
    trainer = Trainer(distiller, spec, protocol, to_device(ds, "cpu"), epochs=protocol.epochs_of("bas"),
                      seed=args.seed, device="cpu", augment=protocol.augment)
    header = {"pilot": f"bas-{args.lr_variant}", "protocol": protocol.name, "seed": args.seed,
              "method_spec": json.loads(json.dumps(spec, default=lambda o: o.__dict__)),
              "train_images": len(ds.train_y), "test_images": len(ds.test_y), "environment": environment("cpu")}
    records = []
    with open(path, "w") as f:
        f.write(json.dumps(header) + "\n")
        while trainer.epoch < trainer.epochs:
            start = time.perf_counter()
            rec = trainer.train_epoch()
            if trainer.evaluates(rec["epoch"]):
                rec.update(trainer.evaluate())
            rec["seconds"] = time.perf_counter() - start
            records.append(rec)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print(json.dumps({k: rec.get(k) for k in ("epoch", "lr", "train_acc", "test_acc", "seconds")}), flush=True)
        evaluated = [r for r in records if "test_acc" in r]
        end = {"tail_change": tail_change([r["epoch"] for r in evaluated], [r["test_acc"] for r in evaluated]),
               "final_acc": evaluated[-1]["test_acc"], "steps": trainer.epoch * trainer.steps_per_epoch,
               "core_seconds": sum(r["seconds"] for r in records) * args.threads}
        f.write(json.dumps(end) + "\n")
    print(json.dumps(end))


if __name__ == "__main__":
    main()
