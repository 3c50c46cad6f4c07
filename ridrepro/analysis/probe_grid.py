"""Ojha et al.'s probes (ridrepro.analysis.probes) on a committed grid: `ridrepro probes` and probe_grid().

Every probe on the same class-balanced test images for each run found under <root>/<protocol>/, as tidy rows
(teacher, cell, run, seed, probe, against, value, n); every expected run or probe it could not use is listed
under "missing" with the reason. CHOICE (pairings): a distilled student of seed s is compared with the BAS student
of the next seed with weights, cyclically. Why, and the cost: book/engine.md, "Measurements after training".
"""

import json
import math
import time
from pathlib import Path

import torch

from ridrepro.analysis import probes
from ridrepro.data import balanced_subset, load_cifar10
from ridrepro.layout import METHODS, TEACHER_KINDS, cell_name, parse_run, student_dir, teacher_dir
from ridrepro.models.weights import load_student, load_teacher
from ridrepro.protocols import get_protocol, protocol_data

TRANSFORMS = ("crop_flip", "jitter")


def distilled_methods(protocol):
    """The distillation methods of a protocol (every method but BAS): what the probes look at by default."""
    return [m for m in METHODS if m != "bas" and m in protocol.methods]


def inventory(root, protocol, seeds=(0, 1, 2), methods=None, teachers=TEACHER_KINDS, teacher_seed=0):
    """The runs a probe grid needs: (available, missing). available: run name -> (kind, folder), kind one of
    "teacher" | "bas" | a method; missing: [{"run", "reason"}] for each expected run without usable weights."""
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    name, methods = protocol.name, methods or distilled_methods(protocol)
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


def probe_images(protocol, data=None, n_images=1000, subset_seed=0, available=None):
    """The probe images: a class-balanced seeded subset (n_images / 10 per class) of the protocol's test split,
    as float pixels in [0, 1], and their labels. With `available` (inventory's runs), the runs must have been
    trained on the same data source (check_provenance)."""
    ds = load_cifar10(data)
    if available:
        check_provenance(available, ds.provenance)
    ds = protocol_data(protocol, ds)
    idx = balanced_subset(ds.test_y, n_images // 10, subset_seed)
    return ds.test_x[idx].float() / 255, ds.test_y[idx]


def check_provenance(available, provenance):
    """Refuse runs trained on another data source than the probe images' (synthetic data, another archive),
    naming both: their probes on these images would measure nothing they learnt."""
    def source(p):
        return f"synthetic data (seed {p.get('seed')})" if p.get("kind") == "synthetic" else \
            f"{p.get('path')} (sha256 {str(p.get('sha256'))[:12]}...)"
    for run, (_, folder) in sorted(available.items()):
        config = folder / "config.json"
        trained = json.loads(config.read_text()).get("data_provenance") if config.exists() else None
        if trained and trained.get("sha256") != provenance.get("sha256"):
            raise ValueError(f"{run} ({folder}) was trained on {source(trained)}, but the probes would use "
                             f"{source(provenance)}; probe runs on the data they were trained on (--data)")


def _partner(seed, bas_seeds):
    """The next BAS seed after `seed`, cyclically, other than `seed`; None without one."""
    others = sorted(s for s in bas_seeds if s != seed)
    if not others:
        return None
    later = [s for s in others if s > seed]
    return later[0] if later else others[0]


def probe_grid(root, protocol, x=None, y=None, *, data=None, n_images=1000, subset_seed=0, seeds=(0, 1, 2),
               methods=None, teachers=TEACHER_KINDS, teacher_seed=0, transforms=TRANSFORMS, eps=probes.BIM_EPS,
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
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    methods = methods or distilled_methods(protocol)
    available, missing = inventory(root, protocol, seeds, methods, teachers, teacher_seed)
    if x is None:
        x, y = probe_images(protocol, data, n_images, subset_seed, available)
    n = len(y)
    log(f"probing {len(available)} runs of {protocol.name} on {n} images")
    for m in missing:
        log(f"missing: {m['run']} ({m['reason']})")
    rows, seconds = [], {}
    xt = {t: probes.TRANSFORMS[t](x, seed=transform_seed) for t in transforms}

    def row(teacher, run, probe, value, against=None, count=n):
        parsed = parse_run(run)
        seed, cell = parsed.seed, cell_name(parsed.method, parsed.teacher)
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
        adv, keep, logits = probes.bim_attack(model, x, y, protocol.norm, eps=eps, steps=steps, batch_size=batch_size)
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
        model = load_student(students[f"bas-s{b}"][1], protocol.student_arch).requires_grad_(False)
        adv, keep, _ = probes.bim_attack(model, x, y, protocol.norm, eps=eps, steps=steps, batch_size=batch_size)
        foreign[f"bas-s{b}"] = (adv, keep)
        seconds[f"attack bas-s{b}"] = time.perf_counter() - start

    def teachers_of(kind, run):  # the loaded teachers a student is compared with: BAS both, a cell its own
        if kind == "bas":
            return list(tstate)
        student = parse_run(run)
        return [k for k in tstate if (student.teacher, student.teacher_seed) == (k, teacher_seed)]

    cams = {}
    for run, (kind, folder) in students.items():
        start = time.perf_counter()
        model = load_student(folder, protocol.student_arch).requires_grad_(False)
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
        seed = parse_run(run).seed
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


def table(result, stat="mean"):
    """The probes table: one row per (teacher, cell), one column per probe, the `stat` ("mean", "std", "count")
    over seeds (and, for fool_foreign, over attackers; its teacher is "-": no teacher is involved)."""
    import pandas as pd

    df = pd.DataFrame(result["rows"])
    df["teacher"] = df["teacher"].fillna("-")
    return df.pivot_table(index=["teacher", "cell"], columns="probe", values="value", aggfunc=stat)
