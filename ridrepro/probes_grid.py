"""Ojha et al.'s probes (ridrepro.probes) on a committed grid: `ridrepro probes` and probe_grid().

For the runs it finds under <root>/<protocol>/ (ridrepro.runs layout: teacher-<tt|ut>-s<t>, bas-s<seed>,
<vid|rid|ted>-<tt|ut>-s<seed>) it computes every probe on the same class-balanced test images and returns
tidy rows (teacher, cell, run, seed, probe, against, value, n). Every run it expected and could not use is
listed under "missing" with the reason, and so is every probe it could not compute (a missing partner);
nothing is skipped silently.

Pairings (CHOICE): each distilled student S_d of seed s is compared with the independent student S_i =
bas-s<p>, p the next BAS seed after s (cyclically) among those with weights, so that S_i never shares S_d's
initialisation (a student of seed s starts from the same weights as bas-s<s>); the Ind-against-Ind control
scores bas-s<s> against the same partner. With a single BAS seed, that seed is everyone's S_i and the
control is reported missing. With exactly two BAS seeds the two Ind-against-Ind scores are s and 1 - s
(up to ties), so their mean is 0.5 by construction: only their spread says something; three seeds pair
0-1, 1-2, 2-0 and do not cancel. Foreign attackers: every BAS seed with weights is attacked in the teacher's
place, and every other student's fooling rate on its kept images is a row (against = the attacker).

Cost on 1,000 images, one thread of a 2-core AVX2 machine shared with two training processes: 140-180 s per
teacher (WRN-40-2: BIM, Grad-CAM, taps, transformations; once per teacher, shared by its cells), 8-13 s per
student (WRN-16-1), 11 s per BAS foreign attack; a 21-student grid with both teachers about 9 minutes.

An untrained teacher (ut) predicts one class for every image, with a top-1 margin of ~150 logits (both
committed ut teachers): BIM at 4/255 cannot change its prediction, so it keeps no image and fool_teacher is
null, and its invariance is 1 under any transformation. Its KL, CKA and Grad-CAM rows stay informative.

`ridrepro rdm-curves` and rate_distortion_curves() give the other evaluation-only measurement of the
"What else gets distilled" chapter: CIFD's RDM rate-distortion curve for each teacher of a grid.
"""

import json
import math
import re
import time
from pathlib import Path

import torch

from ridrepro import probes
from ridrepro.data import balanced_subset
from ridrepro.runs import load_teacher, student_dir, teacher_dir, teacher_label

# Run names, with a teacher seed other than 0 appended to the teacher (rid-tt3-s0); the cell drops it.
# Any method name, so that a method added later (cifd) is probed by naming it in `methods`.
RUN_NAME = re.compile(r"(?P<method>[a-z0-9]+)(-(?P<teacher>tt|ut)\d*)?-s(?P<seed>\d+)")

METHODS = ("vid", "rid", "ted")
TEACHERS = ("tt", "ut")
TRANSFORMS = ("crop_flip", "jitter")


def inventory(root, protocol, seeds=(0, 1, 2), methods=METHODS, teachers=TEACHERS, teacher_seed=0):
    """The runs a probe grid needs: (available, missing). available: run name -> (kind, folder), kind one of
    "teacher" | "bas" | a method; missing: [{"run", "reason"}] for each expected run without usable weights."""
    name = getattr(protocol, "name", protocol)
    want = [(f"teacher-{k}-s{teacher_seed}", "teacher", teacher_dir(root, name, k, teacher_seed)) for k in teachers]
    want += [(f"bas-s{s}", "bas", student_dir(root, name, "bas", s)) for s in seeds]
    want += [(p.name, m, p) for k in teachers for m in methods for s in seeds
             for p in [student_dir(root, name, m, s, k, teacher_seed)]]
    available, missing = {}, []
    for run, kind, folder in want:
        weights = folder / ("teacher.pt" if kind == "teacher" else "student.pt")
        done = folder / ("teacher.json" if kind == "teacher" else "finished.json")
        if not folder.is_dir():
            reason = "no run folder"
        elif not done.exists():
            reason = "not finished"
        elif not weights.exists():
            reason = f"finished but {weights.name} is not there"
        else:
            available[run] = (kind, folder)
            continue
        missing.append({"run": run, "reason": reason})
    return available, missing


def load_student(folder, protocol):
    from ridrepro.engine import build_model

    model = build_model(tuple(protocol.student_arch))
    model.load_state_dict(torch.load(Path(folder) / "student.pt", weights_only=True, map_location="cpu"))
    return model.eval().requires_grad_(False)


def probe_images(protocol, data=None, n_images=1000, subset_seed=0):
    """The probe images: a class-balanced seeded subset (n_images / 10 per class) of the protocol's test split,
    as float pixels in [0, 1], and their labels."""
    from ridrepro.data import load_cifar10
    from ridrepro.runs import protocol_data

    ds = protocol_data(protocol, load_cifar10(data))
    idx = balanced_subset(ds.test_y, n_images // 10, subset_seed)
    return ds.test_x[idx].float() / 255, ds.test_y[idx]


def _partner(seed, bas_seeds):
    """The next BAS seed after `seed`, cyclically, other than `seed`; None without one."""
    others = sorted(s for s in bas_seeds if s != seed)
    if not others:
        return None
    later = [s for s in others if s > seed]
    return later[0] if later else others[0]


def probe_grid(root, protocol, x=None, y=None, *, data=None, n_images=1000, subset_seed=0, seeds=(0, 1, 2),
               methods=METHODS, teachers=TEACHERS, teacher_seed=0, transforms=TRANSFORMS, eps=probes.BIM_EPS,
               steps=probes.BIM_STEPS, transform_seed=0, batch_size=100, log=print):
    """Every probe on every usable run of a grid. Returns {"rows", "missing", "seconds", "settings"}.

    x, y: probe images (float pixels in [0, 1]) and labels; by default probe_images(protocol, data, n_images,
    subset_seed). Rows (one probe value each):
      teacher rows (cell teacher-<k>): accuracy, invariance_<t>, bim_kept (the fraction of images fooling it);
      per student M and teacher T (BAS under both teachers, a distilled cell under its own): accuracy,
        agreement (top-1 with T), kl (KL(T || M), nats), fool_teacher (fooling rate on T's kept BIM images),
        invariance_<t>, cam_cos (mean cos(CAM_T, CAM_M)), cka_<i> (linear CKA of tap i, matched layers),
        localisation (against = S_i: cos(CAM_T, CAM_M) > cos(CAM_T, CAM_Si), 0.5 chance);
      fool_foreign (teacher None): M's fooling rate on the kept BIM images of a BAS attacker (against).
    seconds: wall seconds per run (its own forwards, backwards and comparisons) and per attack.
    """
    from ridrepro.protocols import get_protocol
    from ridrepro.results import cell_name  # here, not at the top: the command line starts without pandas

    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if x is None:
        x, y = probe_images(protocol, data, n_images, subset_seed)
    n = len(y)
    available, missing = inventory(root, protocol, seeds, methods, teachers, teacher_seed)
    for m in missing:
        log(f"missing: {m['run']} ({m['reason']})")
    rows, seconds = [], {}
    xt = {t: probes.TRANSFORMS[t](x, seed=transform_seed) for t in transforms}

    def row(teacher, run, probe, value, against=None, count=n):
        m = RUN_NAME.fullmatch(run)
        seed = int(m["seed"])
        cell = cell_name(m["method"], m["teacher"])
        value = float(value)  # NaN (a fooling rate with no kept image) is written as null: strict JSON
        rows.append({"teacher": teacher, "cell": cell, "run": run, "seed": seed, "probe": probe, "against": against,
                     "value": None if math.isnan(value) else value, "n": int(count)})

    # --- teachers: everything a student is compared with, computed once -------------------------------------
    tstate = {}
    for k in teachers:
        run = f"teacher-{k}-s{teacher_seed}"
        if run not in available:
            continue
        start = time.perf_counter()
        model, _ = load_teacher(available[run][1])
        logits = probes.predict(model, x, protocol.norm)
        adv = probes.bim(model, x, y, protocol.norm, eps=eps, steps=steps, batch_size=batch_size)
        keep = probes.fooled(logits, probes.predict(model, adv, protocol.norm))
        tstate[k] = {"run": run, "logits": logits, "adv": adv, "keep": keep,
                     "cam": probes.grad_cam(model, x, y, protocol.norm, batch_size=batch_size),
                     "grams": [probes.centered_gram(f) for f in probes.tap_features(model, x, protocol.norm)]}
        row(k, run, "accuracy", (logits.argmax(1) == y).double().mean())
        row(k, run, "bim_kept", keep.double().mean())
        for t in transforms:
            row(k, run, f"invariance_{t}", probes.invariance(logits, probes.predict(model, xt[t], protocol.norm)))
        del model
        seconds[run] = time.perf_counter() - start
        log(f"{run}: {seconds[run]:.0f} s (accuracy {rows[-len(transforms) - 2]['value']:.3f}, "
            f"BIM fools it on {keep.double().mean():.3f})")

    # --- students -------------------------------------------------------------------------------------------
    students = {r: v for r, v in available.items() if v[0] != "teacher"}
    bas_seeds = sorted(int(r[5:]) for r, (kind, _) in students.items() if kind == "bas")
    if len(bas_seeds) < 2:
        missing.append({"run": "bas", "probe": "localisation (Ind against Ind), fool_foreign on BAS",
                        "reason": f"needs two BAS seeds with weights, found {len(bas_seeds)}"})
    foreign = {}
    for b in bas_seeds:  # foreign attackers: the BAS students, attacked in the teacher's place
        start = time.perf_counter()
        model = load_student(students[f"bas-s{b}"][1], protocol)
        adv = probes.bim(model, x, y, protocol.norm, eps=eps, steps=steps, batch_size=batch_size)
        keep = probes.fooled(probes.predict(model, x, protocol.norm), probes.predict(model, adv, protocol.norm))
        foreign[f"bas-s{b}"] = (adv, keep)
        seconds[f"attack bas-s{b}"] = time.perf_counter() - start

    def teachers_of(kind, run):  # the loaded teachers a student is compared with: BAS both, a cell its own
        if kind == "bas":
            return list(tstate)
        return [k for k in tstate if run.split("-")[1] == teacher_label(k, teacher_seed)]

    cams = {}
    for run, (kind, folder) in students.items():
        start = time.perf_counter()
        model = load_student(folder, protocol)
        logits = probes.predict(model, x, protocol.norm)
        inv = {t: probes.invariance(logits, probes.predict(model, xt[t], protocol.norm)) for t in transforms}
        cams[run] = probes.grad_cam(model, x, y, protocol.norm, batch_size=batch_size)
        grams = [probes.centered_gram(f) for f in probes.tap_features(model, x, protocol.norm)]
        mine = teachers_of(kind, run)
        if kind != "bas" and not mine:
            missing.append({"run": run, "probe": "all teacher probes", "reason": "its teacher is missing"})
        for k in mine:
            ts = tstate[k]
            row(k, run, "accuracy", (logits.argmax(1) == y).double().mean())
            row(k, run, "agreement", probes.agreement(ts["logits"], logits), ts["run"])
            row(k, run, "kl", probes.kl_divergence(ts["logits"], logits), ts["run"])
            rate = probes.fooling_rate(logits, probes.predict(model, ts["adv"], protocol.norm), ts["keep"])
            row(k, run, "fool_teacher", rate, ts["run"], int(ts["keep"].sum()))
            for t in transforms:
                row(k, run, f"invariance_{t}", inv[t])
            row(k, run, "cam_cos", probes.cosine(ts["cam"], cams[run]).mean(), ts["run"])
            for i, (gt, gs) in enumerate(zip(ts["grams"], grams)):
                row(k, run, f"cka_{i + 1}", probes.cka_from_grams(gt, gs), ts["run"])
        for attacker, (adv, keep) in foreign.items():
            if attacker != run:
                rate = probes.fooling_rate(logits, probes.predict(model, adv, protocol.norm), keep)
                row(None, run, "fool_foreign", rate, attacker, int(keep.sum()))
        del model, grams
        seconds[run] = time.perf_counter() - start
        log(f"{run}: {seconds[run]:.0f} s")

    # --- localisation: S_d against S_i, and Ind against Ind ------------------------------------------------------
    for run, (kind, _) in students.items():
        seed = int(run.rsplit("-s", 1)[1])
        p = _partner(seed, bas_seeds)
        if p is None and kind != "bas" and bas_seeds:
            p = bas_seeds[0]  # a single BAS seed: it is S_i for everyone (even of the same seed)
        if p is None:
            missing.append({"run": run, "probe": "localisation", "reason": "no BAS partner with weights"})
            continue
        for k in teachers_of(kind, run):
            row(k, run, "localisation", probes.localisation_score(tstate[k]["cam"], cams[run], cams[f"bas-s{p}"]),
                f"bas-s{p}")

    settings = {"protocol": protocol.name, "root": str(root), "n_images": n, "subset_seed": subset_seed,
                "seeds": list(seeds), "methods": list(methods), "teachers": list(teachers),
                "teacher_seed": teacher_seed,
                "transforms": list(transforms), "transform_seed": transform_seed, "bim": {
                    "eps": eps, "alpha": eps / 4, "steps": steps, "space": "pixels in [0, 1]", "label": "ground truth"},
                "cka": "plain linear CKA of the flattened group outputs (taps 1-3), teacher and student",
                "grad_cam": "ground-truth class, last group output, bilinear upsampling to 32x32, ReLU, flatten",
                "threads": torch.get_num_threads()}
    return {"rows": rows, "missing": missing, "seconds": seconds, "settings": settings}


ROW_COLUMNS = ["teacher", "cell", "run", "seed", "probe", "against", "value", "n"]


def write(result, out, columns=ROW_COLUMNS):
    """result as <out>.json (everything) and <out>.csv (the rows, in `columns`); returns the two paths."""
    import pandas as pd

    out = Path(out)
    base = out.with_suffix("") if out.suffix in (".json", ".csv") else out
    base.parent.mkdir(parents=True, exist_ok=True)
    js, csv = base.with_suffix(".json"), base.with_suffix(".csv")
    js.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    pd.DataFrame(result["rows"], columns=columns).to_csv(csv, index=False)
    return js, csv


# ----------------------------------------------------------------------------- CIFD's RDM curves

# 0.25 nats carries a tenth of the label's ln 10; 1, 4, 16 and 64 are cpu-4k's four RDMs.
RD_RATES = (0.25, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
RD_COLUMNS = ["teacher", "rate", "noise_std", "nmse", "acc", "teacher_acc", "agreement", "kl_teacher", "red",
              "uni_t", "uni_s", "syn", "unit"]


def rate_distortion_curves(root, protocol, teachers=TEACHERS, rates=RD_RATES, *, data=None, ds=None, teacher_seed=0,
                           seed=0, log=print):
    """CIFD's rate-distortion curve for each committed teacher of a grid: per rate, one RDM trained as the
    protocol's CIFD stage 1 trains its RDMs (its d_z, hidden width, epochs, Adam learning rate and batch size)
    on the teacher's embeddings of the students' training images, and measured on the protocol's test images
    (ridrepro.distill.cifd.teacher_rate_distortion: distortion, RDM accuracy, agreement and KL with the teacher,
    and the PID of (e_T, e_k; Y) with the protocol's PID preset). Returns {"rows", "missing", "seconds",
    "settings"}, rows one per (teacher, rate); a teacher without teacher.json is listed under "missing".
    ds: the protocol's data (a ridrepro.data.CIFAR10), by default protocol_data(protocol, load_cifar10(data))."""
    from ridrepro.data import load_cifar10
    from ridrepro.distill.cifd import teacher_rate_distortion
    from ridrepro.protocols import get_protocol
    from ridrepro.runs import protocol_data

    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if "cifd" not in protocol.methods:
        raise ValueError(f"protocol {protocol.name!r} has no cifd method, so no RDM settings to follow")
    if not rates or min(rates) <= 0:
        raise ValueError(f"rates must be positive nats, got {rates}")
    method = protocol.methods["cifd"]
    c = method.cifd
    fit = {"d_z": c["d_z"], "hidden": c["hidden"], "epochs": c["stage1_epochs"], "lr": method.optim["rdm"].lr,
           "batch_size": protocol.batch_size}
    # the PID as the grid's records compute it, without their bootstrap and null (rate_distortion keeps atoms only)
    pid_settings = {k: v for k, v in protocol.pid_overrides.items() if k not in ("bootstrap", "null")}
    rows, missing, seconds = [], [], {}
    for k in teachers:
        folder = teacher_dir(root, protocol.name, k, teacher_seed)
        if not (folder / "teacher.json").exists():
            missing.append({"run": folder.name, "reason": "no finished teacher (teacher.json)"})
            log(f"missing: {folder.name}")
            continue
        if ds is None:
            ds = protocol_data(protocol, load_cifar10(data))
        start = time.perf_counter()
        model, _ = load_teacher(folder)
        for r in teacher_rate_distortion(model, ds.train_x, ds.train_y, ds.test_x, ds.test_y, protocol.norm,
                                         rates=tuple(rates), eval_batch_size=protocol.eval_batch_size, seed=seed,
                                         pid_preset=protocol.pid_preset, **fit, **pid_settings):
            rows.append({"teacher": k, **{name: r[name] for name in RD_COLUMNS[1:]}})
        seconds[folder.name] = time.perf_counter() - start
        log(f"{folder.name}: {len(rates)} rates, {seconds[folder.name]:.0f} s")
    settings = {"protocol": protocol.name, "root": str(root), "teacher_seed": teacher_seed, "rates": list(rates),
                "seed": seed, **fit, "train_images": None if ds is None else len(ds.train_y),
                "test_images": None if ds is None else len(ds.test_y), "pid_preset": protocol.pid_preset,
                "pid_overrides": pid_settings, "threads": torch.get_num_threads()}
    return {"rows": rows, "missing": missing, "seconds": seconds, "settings": settings}


def table(result, stat="mean"):
    """The probes table: one row per (teacher, cell), one column per probe, the `stat` ("mean", "std", "count")
    over seeds (and, for fool_foreign, over attackers; its teacher is "-": no teacher is involved)."""
    import pandas as pd

    df = pd.DataFrame(result["rows"])
    df["teacher"] = df["teacher"].fillna("-")
    return df.pivot_table(index=["teacher", "cell"], columns="probe", values="value", aggfunc=stat)


# ----------------------------------------------------------------------------- command line

def add_commands(sub):
    from ridrepro.protocols import PROTOCOLS

    p = sub.add_parser("probes", help="Ojha et al.'s probes (agreement, KL, BIM transfer, invariance, Grad-CAM, "
                                      "CKA) on a committed grid's runs; writes OUT.json and OUT.csv")
    p.add_argument("--protocol", required=True, choices=list(PROTOCOLS))
    p.add_argument("--runs", default="runs", help="root folder of run folders (default: ./runs)")
    p.add_argument("--out", required=True, help="output path without suffix (OUT.json, OUT.csv)")
    p.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    p.add_argument("--images", type=int, default=1000, help="class-balanced test images (default 1000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   help="distillation methods whose <method>-<tt|ut>-s<seed> runs to probe (default: vid rid ted)")
    p.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS)
    p.add_argument("--transforms", nargs="+", default=list(TRANSFORMS), choices=sorted(probes.TRANSFORMS))
    p.add_argument("--eps", type=float, default=probes.BIM_EPS * 255, help="BIM eps in pixel levels of 255 (default 4)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=_cmd_probes)

    p = sub.add_parser("rdm-curves", help="CIFD's RDM rate-distortion curve (distortion, accuracy, PID of "
                                          "(e_T, e_k; Y) against rate) for a grid's teachers; writes OUT.json, OUT.csv")
    p.add_argument("--protocol", required=True, choices=[k for k, v in PROTOCOLS.items() if "cifd" in v.methods])
    p.add_argument("--runs", default="runs", help="root folder of run folders (default: ./runs)")
    p.add_argument("--out", required=True, help="output path without suffix (OUT.json, OUT.csv)")
    p.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    p.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS)
    p.add_argument("--rates", type=float, nargs="+", default=list(RD_RATES), help="channel rates in nats")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=_cmd_rdm_curves)


def _cmd_probes(args):
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = probe_grid(args.runs, args.protocol, data=args.data, n_images=args.images, seeds=args.seeds,
                        methods=args.methods, teachers=args.teachers, transforms=args.transforms, eps=args.eps / 255)
    result["seconds"]["total"] = time.perf_counter() - start
    js, csv = write(result, args.out)
    print(f"{len(result['rows'])} rows, {len(result['missing'])} missing; {js}, {csv} "
          f"({result['seconds']['total']:.0f} s)")
    return 0


def _cmd_rdm_curves(args):
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = rate_distortion_curves(args.runs, args.protocol, args.teachers, args.rates, data=args.data)
    result["seconds"]["total"] = time.perf_counter() - start
    js, csv = write(result, args.out, RD_COLUMNS)
    print(f"{len(result['rows'])} rows, {len(result['missing'])} missing; {js}, {csv} "
          f"({result['seconds']['total']:.0f} s)")
    return 0
