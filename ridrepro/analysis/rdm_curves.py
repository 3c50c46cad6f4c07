"""CIFD's RDMs measured alone: stage 1 outside the engine on a frozen teacher's embeddings, and the
rate-distortion curve per rate (distortion, RDM accuracy, agreement and KL with the teacher, PID of
(e_T, e_k; Y)) for each committed teacher of a grid: `ridrepro rdm-curves`."""

import time

import torch
import torch.nn as nn

from ridrepro.data import load_cifar10
from ridrepro.distill.cifd import RDM, Standardizer, embedding, kl_div, nmse, rdm_loss
from ridrepro.layout import TEACHER_KINDS, teacher_dir
from ridrepro.models.forward import tap_features
from ridrepro.models.weights import load_teacher
from ridrepro.protocols import get_protocol, protocol_data


def fit_rdms(rdms, e_t, t_logits, y, epochs, batch_size=128, lr=3e-3, clip=100.0, seed=0):
    """Stage 1 outside the engine, on (standardised) embeddings in memory: what the "rdm" phase does (the same
    loss, Adam, clipping, one shuffle per epoch), for the rate-distortion curve and tests. Returns the last
    epoch's mean loss."""
    opt = torch.optim.Adam(rdms.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    rdms.train()
    for _ in range(epochs):
        order, total = torch.randperm(len(y), generator=gen), 0.0
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            noise = [torch.randn(len(idx), r.d_z, generator=gen) for r in rdms]
            loss = sum(rdm_loss(r, e_t[idx], t_logits[idx], y[idx], n)[0] for r, n in zip(rdms, noise))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rdms.parameters(), clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
    return total / len(y)


@torch.no_grad()
def rdm_outputs(rdm, e_t, seed=0):
    """e_k and logits of one RDM on e_t, through its channel with one seeded noise draw."""
    noise = torch.randn(len(e_t), rdm.d_z, generator=torch.Generator().manual_seed(seed))
    return rdm(e_t, noise)


def rate_distortion(train, test, rates, d_z=32, hidden=256, epochs=4, batch_size=128, lr=3e-3, seed=0,
                    pid=True, pid_preset="paper-code", **pid_overrides):
    """One RDM per rate trained on `train` and measured on `test`, each an (e_T, teacher logits, y) triple.

    One row per rate: rate (nats, set by the channel), test NMSE of the standardised e_T (distortion), RDM
    accuracy, teacher accuracy, agreement with the teacher's top-1, KL(p_T || p_k), and with pid=True the PID
    of (e_T, e_k; Y) on the test set (ridrepro.pid.representation_pid, the engine's features path: L2-normalised
    rows, PCA, KMeans), with e_T and e_k both standardised by the training split's statistics.
    CHOICE: each RDM is trained alone (stage 1 sums independent losses, so this equals training them together
    up to the noise draws), with the method's stage-1 settings by default.
    """
    e_tr, l_tr, y_tr = train
    e_te, l_te, y_te = test
    std = Standardizer(e_tr.shape[1])
    std.update(e_tr)  # what the engine's "rdm" phase has accumulated after its first epoch
    e_tr, e_te = std(e_tr), std(e_te)
    rows = []
    for i, rate in enumerate(rates):
        torch.manual_seed(seed + i)
        rdm = RDM(e_tr.shape[1], rate, d_z, hidden, num_classes=l_tr.shape[1])
        fit_rdms(nn.ModuleList([rdm]), e_tr, l_tr, y_tr, epochs, batch_size, lr, seed=seed + i)
        rdm.eval()
        e_hat, logits = rdm_outputs(rdm, e_te, seed=seed + i)
        row = {"rate": float(rate), "noise_std": rdm.noise_std, "nmse": float(nmse(e_te, e_hat)),
               "acc": float((logits.argmax(1) == y_te).float().mean()),
               "teacher_acc": float((l_te.argmax(1) == y_te).float().mean()),
               "agreement": float((logits.argmax(1) == l_te.argmax(1)).float().mean()),
               "kl_teacher": float(kl_div(l_te, logits))}
        if pid:
            from ridrepro.pid import representation_pid  # lazily: training must not need the PID stack
            res = representation_pid(e_te, e_hat, y_te, preset=pid_preset, seed=seed, **pid_overrides).to_dict()
            row.update({k: res[k] for k in ("red", "uni_t", "uni_s", "syn", "unit")})
        rows.append(row)
    return rows


def teacher_rate_distortion(teacher, train_x, train_y, test_x, test_y, norm, rates=(0.25, 1, 2, 4, 8, 16, 64),
                            eval_batch_size=128, **kw):
    """rate_distortion on a frozen teacher network: its embeddings and logits of uint8 images (one forward
    pass each, ridrepro.models.forward.tap_features). With a protocol: the students' training subset and its
    test set. Cost: book/engine.md, "Measurements after training"."""
    def outputs(x):
        with torch.no_grad():
            e = embedding(teacher, tap_features(teacher, x, norm, eval_batch_size, layers=(2,))[0])
            return e.contiguous(), teacher.linear(e)

    teacher.eval()
    (e_tr, l_tr), (e_te, l_te) = outputs(train_x), outputs(test_x)
    return rate_distortion((e_tr, l_tr, train_y), (e_te, l_te, test_y), rates, **kw)


# 0.25 nats carries a tenth of the label's ln 10; 1, 4, 16 and 64 are cpu-4k's four RDMs.
RD_RATES = (0.25, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
RD_COLUMNS = ["teacher", "rate", "noise_std", "nmse", "acc", "teacher_acc", "agreement", "kl_teacher", "red",
              "uni_t", "uni_s", "syn", "unit"]


def rate_distortion_curves(root, protocol, teachers=TEACHER_KINDS, rates=RD_RATES, *, data=None, ds=None, teacher_seed=0,
                           seed=0, log=print):
    """CIFD's rate-distortion curve for each committed teacher of a grid: per rate, one RDM trained as the
    protocol's CIFD stage 1 trains its RDMs (its d_z, hidden width, epochs, Adam learning rate and batch size)
    on the teacher's embeddings of the students' training images, and measured on the protocol's test images
    (teacher_rate_distortion: distortion, RDM accuracy, agreement and KL with the teacher,
    and the PID of (e_T, e_k; Y) with the protocol's PID preset). Returns {"rows", "missing", "seconds",
    "settings"}, rows one per (teacher, rate); a teacher without teacher.json is listed under "missing".
    ds: the protocol's data (a ridrepro.data.CIFAR10), by default protocol_data(protocol, load_cifar10(data))."""
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
        log(f"{folder.name}: training an RDM at each of {len(rates)} rates ({', '.join(f'{r:g}' for r in rates)} nats)")
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
