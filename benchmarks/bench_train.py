"""Training-step throughput and model FLOP utilisation (MFU) of the engine, on CPU or CUDA.

    python benchmarks/bench_train.py [--device cpu|cuda] [--threads N] [--steps 6] [--bf16]

Student WRN-16-1, teacher WRN-40-2 (post blocks), batch 128, through the engine's own epoch loop
(gather, normalise, channels_last, teacher taps from the cache unless "live"). FLOPs of one training
step are counted with torch.utils.flop_counter.FlopCounterMode; the peak is a large float32 matmul
timed in the same process, so MFU = achieved FLOP/s / measured matmul FLOP/s on the same device.

The speed anchor: beside the engine, in the same process, the loop a user would write for VID and RID -
torchvision's dataset (PIL images through ToTensor and Normalize), a shuffling DataLoader, the teacher run live
every step, contiguous tensors - with the same distiller losses and optimisers; the ratio engine / conventional
is printed for each.
"""

import argparse
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from ridrepro.data import CIFAR10, to_device
from ridrepro.models import build_model
from ridrepro.protocols import PAPER_CODE
from ridrepro.train.engine import Trainer, build_distiller, build_optimisers


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_flops(device, n, repeats=5):
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def step_flops(trainer, phase):
    """FLOPs of one training step of the engine (Trainer.step: forward, backward, optimiser step) on one batch."""
    idx = torch.arange(trainer.protocol.batch_size, device=trainer.data.train_y.device)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.step(idx, phase, trainer.distiller.phase_groups(phase))
    return counter.get_total_flops()


def bench(name, method, phase_epoch, protocol, data, device, steps, cache, bf16):
    torch.manual_seed(0)
    teacher = None if method.kind == "bas" else build_model(protocol.teacher_arch)
    d = build_distiller(method, build_model(protocol.student_arch), teacher, extras_init=protocol.extras_init)
    tr = Trainer(d, method, protocol, data, epochs=phase_epoch + 2, seed=0, device=device, augment=False,
                 teacher_cache=cache, bf16=bf16, log=lambda *a: None)
    tr.epoch = phase_epoch  # measure the phase this epoch belongs to
    tr.train_epoch()  # warm-up (allocations, kernel selection)
    tr.epoch = phase_epoch
    sync(device)
    rec = tr.train_epoch()
    flops = step_flops(tr, rec["phase"])
    per_s = rec["images_per_s"]
    return {"name": name, "phase": rec["phase"], "images_per_s": per_s,
            "gflop_per_step": flops / 1e9, "achieved_gflops": flops * per_s / protocol.batch_size / 1e9}


def conventional(name, method, phase_epoch, protocol, device, steps):
    """The loop as a user would write it (see the module docstring): images/s over `steps` timed steps."""
    from torch.nn.utils import clip_grad_norm_
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    d = build_distiller(method, build_model(protocol.student_arch), build_model(protocol.teacher_arch),
                        extras_init=protocol.extras_init).to(device)
    opts, _ = build_optimisers(d, method)
    phase = d.phase(phase_epoch)
    active = d.phase_groups(phase)
    groups = d.param_groups()
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*protocol.norm)])
    data = datasets.FakeData(size=protocol.batch_size * (steps + 1), image_size=(3, 32, 32), num_classes=10,
                             transform=tf, random_offset=0)
    loader = DataLoader(data, batch_size=protocol.batch_size, shuffle=True, num_workers=0)
    d.train()
    start = None
    for i, (x, y) in enumerate(loader):
        if i == 1:  # the first step is the warm-up (allocations, kernel selection)
            sync(device)
            start = time.perf_counter()
        x, y = x.to(device), y.to(device)
        loss, _, _ = d.loss(x, y, d.teacher_taps(x), phase)
        for _ in range(method.bn_updates - 1):  # the same computation as the engine's (divergence 10)
            with torch.no_grad():
                d.student(x)
        d.zero_grad(set_to_none=True)
        loss.backward()
        for g in active:
            clip_grad_norm_(groups[g], method.clip)
            opts[g].step()
    sync(device)
    return {"name": name, "phase": phase, "images_per_s": steps * protocol.batch_size / (time.perf_counter() - start)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    protocol = replace(PAPER_CODE, batch_size=128, eval_batch_size=256)
    n = 128 * args.steps
    g = torch.Generator().manual_seed(0)
    ds = CIFAR10((torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8), torch.arange(n) % 10,
                 torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10))
    data = to_device(ds, device)
    m = protocol.methods
    configs = [("BAS", m["bas"], 0, "auto"), ("VID (cached teacher)", m["vid"], 0, "on"),
               ("VID (live teacher)", m["vid"], 0, "off"), ("RID student phase", m["rid"], 8, "on"),
               ("RID filter phase", m["rid"], 30, "on"), ("RID student phase (live teacher)", m["rid"], 8, "off")]
    peak = peak_matmul_flops(device, 8192 if device.type == "cuda" else 2048)
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, batch 128, "
          f"{args.steps} timed steps; peak float32 matmul {peak / 1e9:.1f} GFLOP/s")
    print("| step | phase | images/s | GFLOP/step | achieved GFLOP/s | MFU |\n|---|---|---|---|---|---|")
    results = {}
    for name, method, epoch, cache in configs:
        r = bench(name, method, epoch, protocol, data, device, args.steps, cache, args.bf16)
        results[name] = r
        print(f"| {name} | {r['phase']} | {r['images_per_s']:.0f} | {r['gflop_per_step']:.2f} | "
              f"{r['achieved_gflops']:.1f} | {r['achieved_gflops'] * 1e9 / peak:.1%} |", flush=True)
    ratio = results["VID (cached teacher)"]["images_per_s"] / results["VID (live teacher)"]["images_per_s"]
    print(f"teacher cache speed-up for VID: {ratio:.2f}x")
    print("\n| conventional loop (torchvision dataset + DataLoader, live teacher) | phase | images/s | engine / it |"
          "\n|---|---|---|---|")
    for name, method, epoch, engine in [("VID", m["vid"], 0, "VID (cached teacher)"),
                                        ("RID student phase", m["rid"], 8, "RID student phase")]:
        r = conventional(name, method, epoch, protocol, device, args.steps)
        print(f"| {name} | {r['phase']} | {r['images_per_s']:.0f} | "
              f"{results[engine]['images_per_s'] / r['images_per_s']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
