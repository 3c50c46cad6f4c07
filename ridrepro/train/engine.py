"""The one training loop for every method and the teacher, on CPU or CUDA (airbench-style).

Data live as uint8 tensors on the device; batches are gathered, augmented (batched, on the device) and
normalised on the fly. When the teacher is frozen in eval mode and augmentation is off, its taps are
computed once per dataset and indexed per batch instead of running the teacher every step.
"""

import math
import os
import time
import warnings

import torch
from torch.nn.utils import clip_grad_norm_

from ridrepro.data import norm_tensors
from ridrepro.distill import BAS, CIFD, RID, TED, VID
from ridrepro.models import build_model, init_authors_
from ridrepro.models.forward import evaluate, prepare
from ridrepro.train.tapcache import teacher_taps

# ----------------------------------------------------------------------------- building blocks

def build_distiller(method, student, teacher=None, num_classes=10, extras_init="torch"):
    """The method's Distiller; num_classes sizes the classification heads of RID's and TED's teacher filters.

    extras_init (Protocol.extras_init): "authors" re-initialises the method's own modules (filters, heads,
    regressors) as the authors' code does (divergence 9); "torch" keeps PyTorch's defaults.
    """
    if extras_init not in ("torch", "authors"):
        raise ValueError(f"extras_init must be 'torch' or 'authors', got {extras_init!r}")
    distiller = _distiller(method, student, teacher, num_classes)
    if extras_init == "authors":
        for module in distiller.extras():
            init_authors_(module)
    return distiller


def _distiller(method, student, teacher, num_classes):
    kind = method.kind
    if kind in ("bas", "teacher"):
        return BAS(student)
    if teacher is None:
        raise ValueError(f"method {kind!r} needs a teacher")
    if kind == "vid":
        return VID(student, teacher, lam=method.lam[0])
    if kind == "rid":
        return RID(student, teacher, *method.lam, **method.rid, num_classes=num_classes)
    if kind == "ted":
        return TED(student, teacher, lam=method.lam[0], stage1_epochs=method.ted_stage1_epochs,
                   num_classes=num_classes)
    if kind == "cifd":
        return CIFD(student, teacher, lam=method.lam, **method.cifd, num_classes=num_classes)
    raise ValueError(f"unknown method kind {kind!r}")


def lr_factor(optim):
    """LambdaLR lambda for an Optim spec (see protocols.Schedule)."""
    s = optim.schedule

    def factor(step):
        epoch = max(step - s.lag, 0)
        f = s.gamma ** sum(m <= epoch for m in s.milestones)
        return optim.lr * f if s.squared else f  # squared: PyTorch multiplies this by lr again

    return factor


def build_optimisers(distiller, method, total_steps=None):
    """Optimisers and schedulers per parameter group. total_steps (the run's optimiser steps) sizes onecycle
    schedules, which step after every optimiser step; the others step per epoch (step_schedulers)."""
    groups = distiller.param_groups()
    if set(groups) != set(method.optim):
        raise ValueError(f"method {method.kind!r} has parameter groups {sorted(groups)} but the protocol "
                         f"gives optimisers for {sorted(method.optim)}")
    opts, scheds = {}, {}
    for name, params in groups.items():
        o = method.optim[name]
        if o.kind == "sgd":
            opts[name] = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                         weight_decay=o.weight_decay)
        elif o.kind == "adam":
            opts[name] = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            raise ValueError(f"unknown optimiser {o.kind!r}")
        s = o.schedule
        if s.kind == "onecycle":
            if not total_steps:
                raise ValueError("a onecycle schedule needs the run's total number of optimiser steps")
            scheds[name] = torch.optim.lr_scheduler.OneCycleLR(
                opts[name], max_lr=o.lr, total_steps=total_steps, pct_start=s.warmup, anneal_strategy="linear",
                cycle_momentum=False, div_factor=s.div, final_div_factor=s.final_div / s.div, three_phase=False)
        elif s.kind == "epoch":
            scheds[name] = torch.optim.lr_scheduler.LambdaLR(opts[name], lr_factor(o))
        else:
            raise ValueError(f"unknown schedule kind {s.kind!r}; choose epoch or onecycle")
    return opts, scheds


def per_step(scheds, method):
    """The schedulers stepped after every optimiser step (onecycle), by parameter group."""
    return {k: s for k, s in scheds.items() if method.optim[k].schedule.kind == "onecycle"}


def step_schedulers(scheds, method):
    """End of an epoch: step the schedulers the protocol steps per epoch (paper-code's RID and TED never do)."""
    with warnings.catch_warnings():
        # An alternating method's optimiser may idle for a whole epoch; its schedule still counts epochs.
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
        for name, sched in scheds.items():
            sch = method.optim[name].schedule
            if sch.kind == "epoch" and sch.stepped:
                sched.step()


def schedule_table(distiller, method, epochs, steps_per_epoch=1):
    """Per epoch, what the loop applies: phase, cycle, stepping groups and each optimiser's learning rate
    (at the epoch's first step).

    Built from the same optimisers, schedulers and phase rule as training, without training anything.
    """
    opts, scheds = build_optimisers(distiller, method, epochs * steps_per_epoch)
    stepwise = per_step(scheds, method)
    rows = []
    for epoch in range(epochs):
        phase = distiller.phase(epoch)
        active = list(distiller.phase_groups(phase))
        rows.append({"epoch": epoch + 1, "phase": phase, "cycle": distiller.cycle(epoch), "active": active,
                     "lr": {k: o.param_groups[0]["lr"] for k, o in opts.items()}})
        with warnings.catch_warnings():  # no optimiser steps here: only the schedules advance
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            for _ in range(steps_per_epoch):
                for g in active:
                    if g in stepwise:
                        stepwise[g].step()
        step_schedulers(scheds, method)
    return rows


def protocol_schedule(protocol, method, steps_per_epoch=1):
    """schedule_table for one of a protocol's methods over its epochs, built from the protocol alone."""
    spec = protocol.method(method)
    distiller = build_distiller(spec, build_model(protocol.student_arch), build_model(protocol.teacher_arch))
    return schedule_table(distiller, spec, protocol.epochs_of(method), steps_per_epoch)


def rate_table(protocol, methods=("bas", "vid", "rid", "ted")):
    """Each method's learning rates under a protocol, a row per optimiser: its rate in the first and the last
    epoch, with the epochs and training images they span (the book's side-by-side of two grids' rates)."""
    rows = []
    for method in methods:
        sched = protocol_schedule(protocol, method)
        for group in protocol.method(method).optim:
            rows.append({"protocol": protocol.name, "method": method.upper(), "optimiser": group,
                         "training images": "all" if protocol.train_per_class is None
                         else f"{10 * protocol.train_per_class:,}",
                         "epochs": protocol.epochs_of(method),
                         "first epoch": sched[0]["lr"][group], "last epoch": sched[-1]["lr"][group]})
    return rows


def available_bytes(device):
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cache_decision(distiller, augment, mode, n_images, device, share=0.5, batch_size=0):
    """Whether to cache the teacher's taps: (bool, reason). mode: auto | on | off.

    In auto mode the peak of building the cache (the cache plus about one batch of batch_size images'
    activations) must fit in `share` of the free memory. Free memory is read once, now: processes started
    side by side (grid --jobs N) all read it at the same moment and cannot see each other's coming
    allocations, so the grid gives each of them share / N.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"teacher cache mode must be auto, on or off, got {mode!r}")
    if not distiller.uses_teacher:
        return False, "the method does not use the teacher"
    eligible = not augment and not distiller.teacher.training
    if mode == "off":
        return False, "disabled"
    if not eligible:
        if mode == "on":
            raise ValueError("the teacher cache needs augmentation off and the teacher frozen in eval mode")
        return False, "augmentation is on: the teacher runs live"
    t = distiller.teacher
    per_image = sum(c * s * s for c, s in zip(t.channels, t.spatial)) * 4
    need = n_images * per_image
    # A batch's taps in the model's dtype plus the float copies; roughly a block's intermediates on top.
    peak = need + 3 * min(batch_size, n_images) * per_image
    if mode == "auto" and peak > share * available_bytes(device):
        return False, (f"cache needs {peak / 2**30:.1f} GiB at its peak, more than {share:.0%} of free memory: "
                       "teacher runs live")
    return True, f"cached {need / 2**30:.2f} GiB of teacher taps"


# ----------------------------------------------------------------------------- the loop

class Trainer:
    """Trains one distiller (or teacher) under one protocol; state can be saved and restored exactly."""

    def __init__(self, distiller, method, protocol, data, *, epochs, seed, device, augment, shuffle="epoch",
                 teacher_cache="auto", cache_share=0.5, bf16=False, tap_cache=None, log=print):
        if bf16 and torch.device(device).type != "cuda":
            raise ValueError("bf16 autocast is only offered on CUDA")
        if shuffle not in ("epoch", "fixed"):
            raise ValueError(f"shuffle must be 'epoch' or 'fixed', got {shuffle!r}")
        self.device = torch.device(device)
        self.distiller = distiller.to(self.device, memory_format=torch.channels_last)
        self.method, self.protocol, self.data = method, protocol, data
        self.epochs, self.augment, self.shuffle, self.bf16 = epochs, augment, shuffle, bf16
        self.norm = norm_tensors(protocol.norm, self.device)
        self.steps_per_epoch = -(-len(data.train_y) // protocol.batch_size)
        self.opts, self.scheds = build_optimisers(distiller, method, epochs * self.steps_per_epoch)
        self.stepwise = per_step(self.scheds, method)
        self.groups = distiller.param_groups()
        # Shuffling and augmentation draw on the device, so a step copies no random numbers to it. A CPU
        # device's generator is the plain CPU generator, drawn in the same order as before: CPU runs repeat.
        self.seed = seed
        self.gen = torch.Generator(self.device).manual_seed(seed)  # saved in checkpoints
        self.fixed_order = torch.randperm(len(data.train_y),
                                          generator=torch.Generator().manual_seed(seed)).to(self.device)
        self.epoch = 0
        self.log = log
        use, why = cache_decision(distiller, augment, teacher_cache, len(data.train_y), self.device,
                                  share=cache_share, batch_size=protocol.eval_batch_size)
        self.cache_reason = why
        self.cache = None
        if use:
            start = time.perf_counter()
            self.cache, where = teacher_taps(tap_cache, distiller.teacher, data.train_x, protocol,
                                             range(len(distiller.teacher.channels)))  # every tap
            why += f" in {time.perf_counter() - start:.1f} s" + (f" ({where})" if where else "")
            self.cache_reason = why
        if distiller.uses_teacher:
            log(f"teacher taps: {why}")

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self):
        return {"epoch": self.epoch, "distiller": self.distiller.state_dict(),
                "opts": {k: o.state_dict() for k, o in self.opts.items()},
                "scheds": {k: s.state_dict() for k, s in self.scheds.items()},
                "rng": {"gen": self.gen.get_state(), "gen_device": self.gen.device.type,
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}}

    def load_state_dict(self, state):
        self.epoch = state["epoch"]
        self.distiller.load_state_dict(state["distiller"])
        for k, o in self.opts.items():
            o.load_state_dict(state["opts"][k])
        for k, s in self.scheds.items():
            s.load_state_dict(state["scheds"][k])
        if state["rng"].get("gen_device", "cpu") == self.gen.device.type:  # get_state() is a CPU tensor either way
            self.gen.set_state(state["rng"]["gen"])
        else:
            # Resumed on another device type (--allow-environment-change): a CPU generator's state does not fit
            # a CUDA one. Not exercised by the CPU-only tests; the run is recorded as changed, not bit-identical.
            self.gen.manual_seed(self.seed + 1_000_003 * self.epoch)
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    # --- one step, one epoch ----------------------------------------------------------------------
    def step(self, idx, phase, active, probe=False):
        """One optimiser step on training images idx: (terms, stats, student logits or None, each active group's
        gradient norm before clipping, and with probe the gradient sizes of the loss terms)."""
        d = self.distiller
        x = prepare(self.data.train_x[idx], self.norm, self.augment, self.gen)
        y = self.data.train_y[idx]
        t_taps = None
        if d.uses_teacher:
            t_taps = [c[idx] for c in self.cache] if self.cache is not None else d.teacher_taps(x)
        with self._autocast():
            loss, terms, logits = d.loss(x, y, t_taps, phase)
            for _ in range(self.method.bn_updates - 1):  # divergence 10: predict_step's second forward
                with torch.no_grad():
                    d.student(x)
        sizes = self.gradient_sizes(terms) if probe else None  # read-only: the trajectory is unchanged
        d.zero_grad(set_to_none=True)
        loss.backward()
        norms = {}
        for g in active:
            norms[g] = self.step_group(g)
            self.opts[g].step()
            if g in self.stepwise:
                self.stepwise[g].step()
        return terms, d.pop_stats(), logits, norms, sizes

    def train_epoch(self, progress=None):
        d, data, bs = self.distiller, self.data, self.protocol.batch_size
        epoch = self.epoch
        phase = d.phase(epoch)
        active = d.phase_groups(phase)
        lrs = {k: o.param_groups[0]["lr"] for k, o in self.opts.items()}
        d.train()
        n = len(data.train_y)
        order = self.fixed_order if self.shuffle == "fixed" else torch.randperm(n, generator=self.gen,
                                                                                device=self.device)
        sums, stats, correct, seen, steps = {}, {}, 0, 0, 0
        norms, clipped, probe = {g: 0.0 for g in active}, {g: 0 for g in active}, None
        clip = self.method.clip or math.inf
        start = time.perf_counter()
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            terms, step_stats, logits, step_norms, sizes = self.step(idx, phase, active, probe=probe is None)
            probe = sizes if probe is None else probe  # the first step's, once per epoch
            for g, v in step_norms.items():
                norms[g] += v
                clipped[g] += v > clip
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() * len(idx)
            for k, v in step_stats.items():
                stats[k] = stats.get(k, 0.0) + v.float() * len(idx)
            if logits is not None:
                correct += (logits.argmax(1) == data.train_y[idx]).sum()
                seen += len(idx)
            steps += 1
            if progress is not None:
                progress.update(1)
        step_schedulers(self.scheds, self.method)
        seconds = time.perf_counter() - start
        losses = {k: float(v) / n for k, v in sums.items()}
        if any(not math.isfinite(v) for v in losses.values()):
            self.log(f"warning: non-finite loss at epoch {epoch + 1}: {losses}")
        self.epoch += 1
        diag = {k: (v / n).tolist() for k, v in stats.items()}
        diag.update({k: v.tolist() for k, v in d.epoch_stats().items()})
        return {"epoch": self.epoch, "phase": phase, "cycle": d.cycle(epoch), "active": list(active),
                "lr": lrs, "loss": losses, "train_acc": float(correct) / seen if seen else None,
                "train_seconds": seconds, "images_per_s": n / seconds,
                "grad_norm": {g: float(v) / steps for g, v in norms.items()},
                "clipped": {g: float(v) / steps for g, v in clipped.items()},
                "grad_terms": probe, "student_norm": float(param_norm(d.student.parameters())), "diag": diag}

    def step_group(self, g):
        """Clip a group's gradient as the protocol says; returns its norm before clipping (a tensor)."""
        if self.method.clip is not None:
            return clip_grad_norm_(self.groups[g], self.method.clip)
        return torch.nn.utils.get_total_norm([p.grad for p in self.groups[g] if p.grad is not None])

    def gradient_sizes(self, terms):
        """Norm of each weighted loss term's gradient on the student's parameters (Distiller.grad_weights), for
        the terms this phase trains the student with: CE against the distillation term."""
        params = [p for p in self.distiller.student.parameters() if p.requires_grad]
        out = {}
        for name, w in self.distiller.grad_weights.items():
            t = terms.get(name)
            if t is not None and t.requires_grad:
                grads = torch.autograd.grad(w * t, params, retain_graph=True, allow_unused=True)
                out[name] = float(torch.nn.utils.get_total_norm([g for g in grads if g is not None]))
        return out

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16)

    def evaluates(self, epoch):
        """Whether completed epoch `epoch` (1-based) is evaluated on the test set by the protocol's schedule (a
        measured epoch, ridrepro.train.measure, is evaluated too)."""
        return epoch % self.protocol.eval_every == 0 or epoch == self.epochs

    def evaluate(self):
        return self.evaluate_with_taps()[0]

    def evaluate_with_taps(self, tap_layer=None):
        """Test accuracy and loss, and with tap_layer that layer's test outputs, from one pass."""
        with self._autocast():
            acc, loss, taps = evaluate(self.distiller.student, self.data.test_x, self.data.test_y, self.norm,
                                       self.protocol.eval_batch_size, tap_layer=tap_layer)
        return {"test_acc": acc, "test_loss": loss}, taps


@torch.no_grad()
def param_norm(params):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach().float()) for p in params]))
