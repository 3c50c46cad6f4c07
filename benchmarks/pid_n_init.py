"""How much KMeans restarts (n_init 1 against 10) move the PID atoms of one finished run (divergence 12).

The authors call KMeans(n_clusters) with scikit-learn's defaults, which ran 10 restarts before
scikit-learn 1.4 and one since. This re-clusters one run's final test-set taps (teacher and student,
the protocol's PID layer) under 20 clustering seeds with each setting and prints, per atom, the mean and
the spread over seeds. The bootstrap intervals in pid.jsonl hold the clustering fixed, so they do not
show this.

    python benchmarks/pid_n_init.py --runs results --protocol cpu-preview --run bas-s0 --teacher tt
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ridrepro.data import load_cifar10
from ridrepro.layout import teacher_dir
from ridrepro.models import build_model
from ridrepro.models.forward import evaluate, tap_features
from ridrepro.models.weights import load_teacher
from ridrepro.pid import representation_pid
from ridrepro.protocols import get_protocol, protocol_data

ATOMS = ("red", "uni_t", "uni_s", "syn", "i_yt", "i_ys")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="results")
    ap.add_argument("--protocol", default="cpu-preview")
    ap.add_argument("--run", default="bas-s0", help="a finished student run folder with student.pt")
    ap.add_argument("--teacher", default="tt", choices=["tt", "ut"])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    protocol = get_protocol(args.protocol)
    folder = Path(args.runs) / protocol.name / args.run
    if not (folder / "student.pt").exists():
        raise SystemExit(f"{folder} has no student.pt: the run must be finished with its weights")
    ds = protocol_data(protocol, load_cifar10(args.data))
    teacher, _ = load_teacher(teacher_dir(args.runs, protocol.name, args.teacher, 0))
    student = build_model(protocol.student_arch)
    student.load_state_dict(torch.load(folder / "student.pt", weights_only=True))
    student = student.to(memory_format=torch.channels_last)  # as the Trainer holds it, so the taps match its log
    layer = protocol.pid_layer
    t = tap_features(teacher, ds.test_x, protocol.norm, protocol.eval_batch_size, layers=(layer,))[0]
    s = evaluate(student, ds.test_x, ds.test_y, protocol.norm, protocol.eval_batch_size, tap_layer=layer)[2]
    y = ds.test_y.numpy()
    print(f"{folder} against teacher-{args.teacher}: layer {layer}, {len(y)} test images, preset "
          f"{protocol.pid_preset}, clustering seeds 0..{args.seeds - 1}")
    rows = {}
    for n_init in (1, 10):
        start = time.perf_counter()
        rows[n_init] = np.array([[getattr(r, a) for a in ATOMS] for r in (
            representation_pid(t, s, y, preset=protocol.pid_preset, seed=k, kmeans_n_init=n_init)
            for k in range(args.seeds))])
        print(f"n_init {n_init:2d}: {time.perf_counter() - start:.1f} s")
    print(f"\n| atom (nats) | n_init 1: mean ± sd [min, max] | n_init 10: mean ± sd [min, max] | mean 10 - mean 1 |")
    print("|---|---|---|---|")
    for j, atom in enumerate(ATOMS):
        cells = [f"{v[:, j].mean():.3f} ± {v[:, j].std(ddof=1):.3f} [{v[:, j].min():.3f}, {v[:, j].max():.3f}]"
                 for v in (rows[1], rows[10])]
        print(f"| {atom} | {cells[0]} | {cells[1]} | {rows[10][:, j].mean() - rows[1][:, j].mean():+.3f} |")
    pid = [json.loads(line) for line in (folder / "pid.jsonl").read_text().splitlines()]
    last = [p for p in pid if p["teacher"] == args.teacher][-1]
    print(f"\nlogged record (epoch {last['epoch']}, seed {last['settings']['seed']}, n_init "
          f"{last['settings']['kmeans_n_init']}): " + ", ".join(f"{a} {last[a]:.3f}" for a in ATOMS))


if __name__ == "__main__":
    main()
