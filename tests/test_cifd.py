"""CIFD (ridrepro/distill/cifd.py): RDMs ordered by rate, the IBM absent at inference, the loss terms of the
description, a smoke cell through the CLI, bit-exact resume, the rate-distortion curve, and the committed runs'
identities untouched by the new method."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import killable
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import untimed

from ridrepro.analysis.rdm_curves import fit_rdms, rate_distortion, rdm_outputs
from ridrepro.distill.cifd import CIFD, RDM, channel_noise_std, kl_div, nmse
from ridrepro.models import WideResNet
from ridrepro.models.forward import evaluate
from ridrepro.protocols import CPU_4K, CPU_PREVIEW, PROTOCOLS, SMOKE
from ridrepro.train.engine import build_distiller

ROOT = Path(__file__).resolve().parents[1]


def synthetic_embeddings(n, seed, d=32):
    """Class-structured non-negative 'embeddings' with fixed 'teacher logits' (a fixed linear read-out)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    centers = torch.randn(10, d, generator=torch.Generator().manual_seed(1)) * 2
    e = torch.relu(centers[y] + torch.randn(n, d, generator=g))
    return e, e @ (torch.randn(d, 10, generator=torch.Generator().manual_seed(2)) * 0.5), y


def test_channel_rate_is_exact():
    for rate, d_z in ((1.0, 32), (64.0, 32), (0.25, 8)):
        s = channel_noise_std(rate, d_z)
        assert d_z / 2 * torch.log1p(torch.tensor(1 / s ** 2, dtype=torch.float64)).item() == pytest.approx(rate)
    rdm = RDM(16, 4.0, d_z=8, hidden=16)
    z = rdm.channel(torch.randn(5, 16), noise=torch.zeros(5, 8))
    assert torch.allclose((z ** 2).mean(1), torch.ones(5))  # unit power per dimension, every sample


def test_lower_rate_rdm_has_higher_distortion():
    torch.manual_seed(0)
    train, test = synthetic_embeddings(800, 0), synthetic_embeddings(400, 1)
    rdms = nn.ModuleList(RDM(32, r, d_z=8, hidden=64) for r in (0.5, 4.0, 32.0))
    fit_rdms(rdms, *train, epochs=15, batch_size=64)
    d = [float(nmse(test[0], rdm_outputs(r, test[0])[0])) for r in rdms]
    assert d[0] > d[1] > d[2] and d[0] > 0.8 and d[2] < 0.5, d


def cifd(lam=(1.0, 1.0, 1.0, 1.0), **kw):
    torch.manual_seed(0)
    spec = SMOKE.method("cifd")
    settings = {**spec.cifd, **kw}
    return CIFD(WideResNet(10, 1), WideResNet(10, 2).eval(), lam=lam, **settings)


def test_the_ibm_is_not_used_at_inference():
    d = cifd()
    assert not any(m is d.ibm for m in d.student.modules())  # the student network holds no IBM
    x, y = (torch.rand(20, 3, 32, 32) * 255).to(torch.uint8), torch.arange(20) % 10
    d.train()
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with torch.no_grad():
            d.ibm.enc.weight.add_(torch.randn_like(d.ibm.enc.weight))  # another IBM, another noise draw
        outs.append(evaluate(d.student, x, y, SMOKE.norm, 10, tap_layer=2))
    assert outs[0][:2] == outs[1][:2] and torch.equal(outs[0][2], outs[1][2])


def batch(d, n=8):
    x, y = torch.randn(n, 3, 32, 32), torch.arange(n) % 10
    return x, y, d.teacher_taps(x)


def test_with_the_extra_weights_at_zero_the_loss_is_ce_plus_kd():
    d = cifd(lam=(1.0, 1.0, 0.0, 0.0))
    d.train()
    x, y, taps = batch(d)
    state = torch.get_rng_state()
    loss, terms, logits = d.loss(x, y, taps, "student")
    torch.set_rng_state(state)
    with torch.no_grad():
        t_logits = d.teacher(x)
    tau = d.tau
    kd = F.kl_div(F.log_softmax(logits / tau, 1), F.softmax(t_logits / tau, 1), reduction="batchmean") * tau ** 2
    assert torch.allclose(loss, F.cross_entropy(logits, y) + kd, rtol=1e-5, atol=1e-6)
    assert torch.allclose(terms["kd_teacher"], kd, rtol=1e-5, atol=1e-6)


def test_the_full_loss_is_the_weighted_sum_of_its_terms():
    lam = (1.0, 0.5, 2.0, 3.0)
    d = cifd(lam=lam)
    d.train()
    x, y, taps = batch(d)
    loss, t, _ = d.loss(x, y, taps, "student")
    ibm = t["ibm_rec_teacher"] + t["ibm_rec_rdm"] + d.beta_ib * t["ibm_kl"]
    want = lam[0] * t["ce"] + lam[1] * t["kd_teacher"] + lam[2] * t["kd_rdm"] + lam[3] * ibm
    assert torch.allclose(loss.detach(), want, rtol=1e-5)
    loss, t, logits = d.loss(x, y, taps, "rdm")  # stage 1: per RDM NMSE + KL(p_T || p_k) + CE, no student
    assert logits is None
    assert torch.allclose(loss.detach(), sum(v for k, v in t.items()), rtol=1e-5)
    assert sorted(t) == sorted(f"rdm{k}_{n}" for k in range(3) for n in ("nmse", "kl", "ce"))


@pytest.mark.parametrize("phase", ["rdm", "student"])
def test_only_the_phase_groups_receive_gradients(phase):
    d = cifd()
    d.train()
    x, y, taps = batch(d)
    teacher_state = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    d.loss(x, y, taps, phase)[0].backward()
    groups = d.param_groups()
    active = {id(p) for g in d.phase_groups(phase) for p in groups[g]}
    for name, p in d.named_parameters():
        if name.startswith("teacher."):
            assert not p.requires_grad
        elif id(p) in active:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} should learn in {phase}"
        else:
            assert p.grad is None, f"{name} must not get a gradient in {phase}"
    assert all(torch.equal(v, teacher_state[k]) for k, v in d.teacher.state_dict().items())


def test_protocol_entries():
    for p in (CPU_4K, SMOKE):
        m = p.method("cifd")
        d = build_distiller(m, WideResNet(10, 1), WideResNet(10, 1), extras_init=p.extras_init)
        phases = [d.phase(e) for e in range(p.epochs_of("cifd"))]
        s1 = m.cifd["stage1_epochs"]
        assert phases == ["rdm"] * s1 + ["student"] * (p.epochs - s1) and len(m.cifd["rates"]) >= 3
        assert set(m.optim) == {"rdm", "student"}
    k = CPU_4K.method("cifd")
    vid = CPU_4K.method("vid")  # the student's settings are VID's
    assert (k.optim["student"], k.clip, k.epochs) == (vid.optim["student"], vid.clip, vid.epochs)
    assert list(CPU_4K.methods) == ["bas", "vid", "rid", "ted", "cifd"]
    assert "cifd" not in CPU_PREVIEW.methods and "cifd" not in PROTOCOLS["paper-code"].methods


def test_cpu_4k_grid_gains_the_cifd_cells(tmp_path):
    from ridrepro.train.grid import grid_methods, grid_tasks
    names = [n for n, *_ in grid_tasks(CPU_4K, [0, 1, 2], grid_methods(CPU_4K), tmp_path)]
    assert len(names) == 29 and sum(n.startswith("cifd-") for n in names) == 6
    old = [n for n, *_ in grid_tasks(CPU_4K, [0, 1, 2], ["bas", "vid", "rid", "ted"], tmp_path)]
    assert [n for n in names if not n.startswith("cifd-")] == old and len(old) == 23
    assert grid_methods(CPU_PREVIEW) == ["bas", "vid", "rid", "ted"]


# ----------------------------------------------------------------------------- committed runs

def recorded(identity, key):
    """Whether a dotted identity key is recorded at all (fields added to Method and Protocol later are not)."""
    node = identity
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("protocol", ["cpu-4k", "cpu-preview"])
def test_committed_runs_keep_their_identity(protocol):
    """The protocol-dependent part of every committed run's identity (settings, method spec, epochs) is what
    this code computes: adding CIFD changed no existing method or protocol. (Finished runs are recognised by
    their finished.json; a run that resumes is checked against its whole identity.)"""
    from ridrepro.train.runs import TEACHER_SETTINGS, _plain
    from ridrepro.train.store import _diff_keys
    folders = sorted((ROOT / "results" / protocol).glob("*/config.json"))
    assert folders
    p = PROTOCOLS[protocol]
    for cfg in folders:
        ident = json.loads(cfg.read_text())["identity"]
        settings = {k: v for k, v in p.to_dict().items() if k not in ("methods", "teacher", "notes")}
        if ident["method"] == "teacher" and p.teacher_data == "all":
            settings = {k: settings[k] for k in TEACHER_SETTINGS}
        epochs = 0 if ident.get("teacher_kind") == "ut" else p.epochs_of(ident["method"])
        mine = json.loads(json.dumps({"settings": settings, "method_spec": _plain(p.method(ident["method"])),
                                      "epochs": epochs, "protocol": p.name, "method": ident["method"]}))
        theirs = {k: ident[k] for k in mine}
        diff = set(_diff_keys(theirs, mine))
        if protocol == "cpu-4k":
            assert not diff, (cfg, sorted(diff))
        else:  # the cpu-preview configs predate fields added since (with defaults): every value they record stays
            assert not [k for k in diff if recorded(theirs, k)], (cfg, sorted(diff))


# ----------------------------------------------------------------------------- end to end

@pytest.mark.grid
def test_smoke_cell_through_the_cli(tmp_path):
    cmd = [sys.executable, "-m", "ridrepro", "distil", "--protocol", "smoke", "--synthetic", "--method", "cifd",
           "--teacher", "tt", "--runs", str(tmp_path), "--threads", "1", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stdout + out.stderr
    folder = tmp_path / "smoke" / "cifd-tt-s0"
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == ["rdm", "student", "student", "student"]
    assert metrics[0]["train_acc"] is None and set(metrics[0]["active"]) == {"rdm"}
    assert {"ce", "kd_teacher", "kd_rdm", "ibm_rec_teacher", "ibm_rec_rdm", "ibm_kl"} == set(metrics[1]["loss"])
    pid = [json.loads(x) for x in (folder / "pid.jsonl").read_text().splitlines()]
    assert [(p["epoch"], p["teacher"]) for p in pid] == [(2, "tt"), (4, "tt")]
    assert (folder / "finished.json").exists() and (folder / "student.pt").exists()
    assert json.loads((folder / "config.json").read_text())["identity"]["method_spec"]["cifd"]["rates"] == [1, 8, 64]


EPOCHS = 6
SCRIPT = textwrap.dedent(f"""
    import sys, torch
    from dataclasses import replace
    from ridrepro.protocols import SMOKE
    from ridrepro.train.runs import Options, distil
    from ridrepro.data import synthetic_cifar
    torch.set_num_threads(1)
    p = replace(SMOKE, epochs={EPOCHS}, pid_epochs=())
    p = replace(p, methods={{**p.methods, "cifd": replace(p.methods["cifd"], cifd={{**p.methods["cifd"].cifd,
                                                                                     "stage1_epochs": 2}})}})
    distil(p, synthetic_cifar(), "cifd", 0, "ut", opts=Options(sys.argv[1], log=lambda *a: None))
""")


def run_script(root, kill_after=None):
    killable.run_script(SCRIPT, root, root / "smoke" / "cifd-ut-s0" / "metrics.jsonl", kill_after)


@pytest.mark.grid
def test_killed_cifd_run_resumes_bit_identically(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run_script(clean)
    run_script(killed, kill_after=3)  # killed in stage 2, after stage 1 and one student epoch
    run_script(killed)
    read = lambda root: untimed.records(root / "smoke" / "cifd-ut-s0" / "metrics.jsonl")  # noqa: E731
    assert read(killed) == read(clean) and len(read(clean)) == EPOCHS
    a = torch.load(clean / "smoke" / "cifd-ut-s0" / "checkpoint.pt", weights_only=False)["trainer"]
    b = torch.load(killed / "smoke" / "cifd-ut-s0" / "checkpoint.pt", weights_only=False)["trainer"]
    assert set(a["opts"]) == {"rdm", "student"}
    for k, v in a["distiller"].items():  # the student, the RDMs and the IBM
        assert torch.equal(v, b["distiller"][k]), k


# ----------------------------------------------------------------------------- the rate-distortion curve

def test_rate_distortion_curve_and_pid_against_rate():
    train, test = synthetic_embeddings(600, 0), synthetic_embeddings(300, 1)
    rows = rate_distortion(train, test, rates=(0.5, 4.0, 32.0), d_z=8, hidden=64, epochs=15, batch_size=64)
    assert [r["rate"] for r in rows] == [0.5, 4.0, 32.0]
    nm, acc = [r["nmse"] for r in rows], [r["acc"] for r in rows]
    assert nm[0] > nm[1] > nm[2] and acc[0] < acc[2]
    red = [r["red"] for r in rows]
    assert red[0] < red[2] and all(r["unit"] == "nats" for r in rows)
    assert all(min(r["red"], r["uni_t"], r["uni_s"], r["syn"]) > -1e-9 for r in rows)
    assert rows[0]["uni_t"] > rows[2]["uni_t"]  # the teacher's embedding holds what a low-rate RDM drops


def test_teacher_rate_distortion_on_a_smoke_teacher():
    from ridrepro.analysis.rdm_curves import teacher_rate_distortion
    from ridrepro.data import synthetic_cifar
    ds = synthetic_cifar(20, 10)
    torch.manual_seed(0)
    rows = teacher_rate_distortion(WideResNet(10, 1), ds.train_x, ds.train_y, ds.test_x, ds.test_y, SMOKE.norm,
                                   rates=(1.0, 16.0), d_z=8, hidden=16, epochs=2, batch_size=64)
    assert len(rows) == 2 and all(0 <= r["acc"] <= 1 and "red" in r for r in rows)
