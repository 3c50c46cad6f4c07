"""ridrepro.analysis.probes against hand-computed cases: tiny models and constructed logits whose answers are known."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ridrepro.analysis import probes

IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class Linear(nn.Module):
    """logits = W vec(x) + b: its input gradient is known in closed form."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(b)

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


class Tiny(nn.Module):
    """conv -> ReLU -> global average pool -> linear, with its conv output as the only tap (a CAM net)."""

    def __init__(self, seed, classes=3, channels=4, stride=2):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, 3, stride=stride, padding=1)
        self.linear = nn.Linear(channels, classes)

    def forward(self, x, taps=False):
        a = F.relu(self.conv(x))
        logits = self.linear(a.mean((2, 3)))
        return (logits, [a]) if taps else logits


def images(n=6, size=8, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- agreement and KL

def test_agreement_and_kl_of_identical_models():
    logits = torch.randn(20, 10, generator=torch.Generator().manual_seed(1))
    assert probes.agreement(logits, logits) == 1.0
    assert probes.kl_divergence(logits, logits) == pytest.approx(0.0, abs=1e-12)
    # invariant to a constant shift of the logits: the same distribution
    assert probes.kl_divergence(logits, logits + 3.0) == pytest.approx(0.0, abs=1e-12)


def test_agreement_and_kl_by_hand():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    q = torch.tensor([[0.9, 0.1], [0.9, 0.1]], dtype=torch.float64)
    # argmax: p -> (0 [tie, lowest index], 0), q -> (0, 0)
    assert probes.agreement(p.log(), q.log()) == 1.0
    assert probes.agreement(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])) == 0.5
    kl_row0 = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert probes.kl_divergence(p.log(), q.log()) == pytest.approx(kl_row0 / 2, rel=1e-12)
    # the direction matters: KL(q || p) differs
    kl_rev = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert probes.kl_divergence(q.log(), p.log()) == pytest.approx(kl_rev / 2, rel=1e-12)


def test_predict_normalises():
    torch.manual_seed(0)
    m = Linear(torch.randn(2, 3 * 4 * 4), torch.zeros(2))
    x = images(3, 4)
    expect = ((x - 0.5) / 0.5).flatten(1) @ m.w.detach().T
    assert torch.allclose(probes.predict(m, x, HALF), expect, atol=1e-6)


# ----------------------------------------------------------------------------- BIM

def test_bim_on_a_linear_model_matches_the_hand_computed_steps():
    # Two classes: grad_x CE = (p - onehot(y)) W / std; for y = 0 it is p_1 (W_1 - W_0) / std, whose sign is
    # sign(W_1 - W_0) at every step. So BIM moves each pixel by alpha per step towards sign(W_1 - W_0) until
    # the eps ball (k alpha >= eps) or the [0, 1] box stops it.
    g = torch.Generator().manual_seed(2)
    d = 3 * 4 * 4
    w = torch.randn(2, d, generator=g)
    model = Linear(w, torch.zeros(2))
    x = images(5, 4, seed=3)
    x[0, 0, 0, :] = torch.tensor([0.0, 1.0, 0.001, 0.999])  # pixels at and next to the box's edges
    y = torch.zeros(5, dtype=torch.long)
    direction = torch.sign(w[1] - w[0]).view(3, 4, 4)
    eps = 4 / 255
    for steps, alpha in ((1, eps / 4), (2, eps / 4), (5, eps / 4), (3, 1 / 255 * 0.7)):
        got = probes.bim(model, x, y, HALF, eps=eps, alpha=alpha, steps=steps)
        want = x.clone()
        for _ in range(steps):  # the iteration by hand
            want = torch.minimum(torch.maximum(want + alpha * direction, x - eps), x + eps).clamp(0, 1)
        assert torch.allclose(got, want, atol=1e-7), (steps, alpha)
        closed = (x + min(steps * alpha, eps) * direction).clamp(0, 1)  # and in closed form
        assert torch.allclose(got, closed, atol=1e-6)
    # five steps of eps/4: every pixel sits on the eps ball, unless the box cut it
    got = probes.bim(model, x, y, HALF, eps=eps, steps=5)
    inside = ((x + eps * direction) >= 0) & ((x + eps * direction) <= 1)
    assert torch.allclose((got - x).abs()[inside.expand_as(x)], torch.tensor(eps), atol=1e-6)
    assert got.min() >= 0 and got.max() <= 1


def test_bim_attack_and_transfer_by_construction():
    torch.manual_seed(0)
    d = 3 * 4 * 4
    w = torch.zeros(2, d)
    w[0, :] = -1.0
    w[1, :] = 1.0
    b = torch.zeros(2)
    attacker = Linear(w.clone(), b.clone())
    twin = Linear(w.clone(), b.clone())           # the attacker's copy: fooled wherever the attacker is
    constant = Linear(torch.zeros(2, d), torch.tensor([1.0, 0.0]))  # ignores its input: never fooled
    # images whose mean pixel is just below 0.5 (class 0) and just above (class 1): one eps step flips them
    x = torch.full((4, 3, 4, 4), 0.5)
    x[0] -= 1 / 255
    x[1] -= 1 / 255
    x[2] += 1 / 255
    x[3] += 100 / 255  # far from the boundary: BIM with eps 4/255 cannot flip it
    y = torch.tensor([0, 0, 1, 1])
    adv, keep, logits = probes.bim_attack(attacker, x, y, HALF)
    assert keep.tolist() == [True, True, True, False]
    assert torch.equal(logits, probes.predict(attacker, x, HALF))
    rate = {name: probes.fooling_rate(probes.predict(m, x, HALF), probes.predict(m, adv, HALF), keep)
            for name, m in (("twin", twin), ("constant", constant))}
    assert rate == {"twin": 1.0, "constant": 0.0}


def test_fooling_rate_counts_only_kept_images():
    clean = torch.tensor([[1.0, 0.0]] * 4)
    adv = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert probes.fooling_rate(clean, adv, torch.tensor([True, False, True, False])) == 0.5
    assert probes.fooling_rate(clean, adv, torch.tensor([True, True, False, True])) == 1.0
    assert math.isnan(probes.fooling_rate(clean, adv, torch.zeros(4, dtype=torch.bool)))


# ----------------------------------------------------------------------------- invariance

def test_invariance():
    torch.manual_seed(0)
    x = images(8, 8)
    flip_invariant = Tiny(0)  # global average pooling of a flip-symmetric conv is flip invariant
    with torch.no_grad():
        k = flip_invariant.conv.weight
        k.copy_((k + k.flip(-1)) / 2)
    f = lambda m, z: probes.predict(m, z, IDENTITY)  # noqa: E731
    assert probes.invariance(f(flip_invariant, x), f(flip_invariant, probes.hflip(x))) == 1.0
    clean = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    moved = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert probes.invariance(clean, moved) == 0.5


def test_transformations():
    x = images(5, 32)
    assert torch.equal(probes.color_jitter(x, 0, 0, 0, 0), x)  # no jitter: the identity
    j = probes.color_jitter(x, seed=3)
    assert torch.equal(j, probes.color_jitter(x, seed=3)) and not torch.equal(j, probes.color_jitter(x, seed=4))
    assert j.min() >= 0 and j.max() <= 1 and not torch.allclose(j, x)
    # brightness alone multiplies each image by its own factor in [0.6, 1.4]
    b = probes.color_jitter(x * 0.5, 0.4, 0, 0, 0, seed=1)
    ratio = (b / (x * 0.5)).flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ratio[:, 0].min() >= 0.6 - 1e-6 and ratio[:, 0].max() <= 1.4 + 1e-6 and ratio[:, 0].std() > 0
    c = probes.crop_flip(x, seed=0)
    assert c.shape == x.shape and torch.equal(c, probes.crop_flip(x, seed=0))
    assert torch.equal(probes.hflip(probes.hflip(x)), x)


# ----------------------------------------------------------------------------- Grad-CAM

def test_grad_cam_equals_the_class_activation_map_of_a_gap_network():
    # For logits = W mean_ij(A) + b, d logit_y / d A_kij = W_yk / (h w): Grad-CAM's weights are W_y / (h w) and
    # the map is ReLU(upsample(sum_k W_yk A_k) / (h w)), Zhou et al.'s CAM up to the factor 1 / (h w).
    model = Tiny(1)
    x = images(6, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cam = probes.grad_cam(model, x, y, HALF)
    with torch.no_grad():
        a = F.relu(model.conv((x - 0.5) / 0.5))  # 4 x 4 maps
        w = model.linear.weight[y]  # N x K
        hand = (w[:, :, None, None] * a).sum(1, keepdim=True) / (4 * 4)
        hand = F.interpolate(hand, size=(8, 8), mode="bilinear", align_corners=False).clamp_min(0).flatten(1)
    assert cam.shape == (6, 64)
    assert torch.allclose(cam, hand, atol=1e-6)


def test_localisation_score():
    x = images(12, 8)
    y = torch.arange(12) % 3
    teacher, other = Tiny(5), Tiny(2)  # seed 5: no empty teacher map on these images
    cam_t = probes.grad_cam(teacher, x, y, IDENTITY)
    cam_twin = probes.grad_cam(Tiny(5), x, y, IDENTITY)  # the teacher's own weights: the same CAMs
    cam_o = probes.grad_cam(other, x, y, IDENTITY)
    assert (cam_t.norm(dim=1) > 0).all()  # (an empty teacher map would be a tie: cosine 0 with both)
    assert probes.localisation_score(cam_t, cam_twin, cam_o) == 1.0
    assert probes.localisation_score(cam_t, cam_o, cam_twin) == 0.0
    assert probes.localisation_score(cam_t, cam_o, cam_o) == 0.5  # ties count half: Ind against itself
    # by hand: cosines (1, 0.6, 0) against (0, 0.6, 1) -> wins, tie, loss
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    d = torch.tensor([[2.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    i = torch.tensor([[0.0, 3.0], [0.6, 0.8], [1.0, 0.0]])
    assert probes.localisation_score(t, d, i) == pytest.approx(0.5)
    d2 = torch.tensor([[2.0, 0.0], [0.6, 0.8], [0.0, 0.0]])  # an empty map has cosine 0: still loses to 1
    assert probes.cosine(t, d2).tolist() == pytest.approx([1.0, 0.6, 0.0])


# ----------------------------------------------------------------------------- CKA

def test_linear_cka_exact_values():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 7, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=g, dtype=torch.float64))
    assert probes.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert probes.linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)  # an orthogonal rotation
    assert probes.linear_cka(x, 3.5 * x + 2.0) == pytest.approx(1.0, abs=1e-12)  # isotropic scale and shift
    # 1-D features: CKA is the squared Pearson correlation
    a, b = torch.randn(30, 1, generator=g), torch.randn(30, 1, generator=g)
    r = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
    assert probes.linear_cka(a, b) == pytest.approx(r ** 2, rel=1e-6)
    # by hand on 3 points: X = (0, 1, 2), Y = (0, 1, 0) -> centred (-1, 0, 1), (-1/3, 2/3, -1/3): r = 0, CKA = 0
    assert probes.linear_cka(torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.0], [1.0], [0.0]])) == \
        pytest.approx(0.0, abs=1e-12)


def test_linear_cka_against_the_feature_space_formula():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(25, 9, generator=g, dtype=torch.float64), torch.randn(25, 4, generator=g, dtype=torch.float64)
    y = y + x[:, :4]  # partly shared
    xc, yc = x - x.mean(0), y - y.mean(0)
    feat = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    h = torch.eye(25, dtype=torch.float64) - 1 / 25
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    kernel = hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))
    assert probes.linear_cka(x, y) == pytest.approx(float(feat), rel=1e-12)
    assert probes.linear_cka(x, y) == pytest.approx(float(kernel), rel=1e-12)
    assert 0 < probes.linear_cka(x, y) < 1


def test_cka_of_taps():
    model = Tiny(3)
    x = images(10, 8)
    feats = probes.tap_features(model, x, IDENTITY)
    assert len(feats) == 1 and feats[0].shape == (10, 4 * 4 * 4)
    assert probes.linear_cka(feats[0], feats[0]) == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(7)
    a = torch.randn(12, 5, generator=g)
    assert probes.linear_cka(a, a @ torch.linalg.qr(torch.randn(5, 5, generator=g))[0]) == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- the grid driver

def _fake_grid(root):
    """A smoke-protocol grid: a tt teacher, two BAS seeds, a "RID" student that is the teacher itself (same
    architecture under smoke), a finished VID run without its weights; everything else absent."""
    import json

    from ridrepro.layout import student_dir, teacher_dir
    from ridrepro.models import build_model
    from ridrepro.models.weights import save_teacher
    from ridrepro.protocols import get_protocol

    protocol = get_protocol("smoke")
    torch.manual_seed(0)
    teacher = build_model(protocol.teacher_arch)
    path = teacher_dir(root, "smoke", "tt", 0)
    path.mkdir(parents=True)
    save_teacher(path, teacher, protocol.teacher_arch, 0, "tt", 0.1, "smoke", 0)
    (path / "config.json").write_text("{}")
    runs = {("bas", 0, None): build_model(protocol.student_arch), ("bas", 1, None): build_model(protocol.student_arch),
            ("rid", 0, "tt"): teacher, ("vid", 1, "tt"): None}
    for (method, seed, kind), model in runs.items():
        folder = student_dir(root, "smoke", method, seed, kind)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "finished.json").write_text(json.dumps({"final_acc": 0.1}))
        if model is not None:
            torch.save(model.state_dict(), folder / "student.pt")
    return protocol, teacher


def test_probe_grid_on_a_fake_grid(tmp_path):
    import json

    import pandas as pd

    from ridrepro.analysis import probe_grid

    protocol, teacher = _fake_grid(tmp_path)
    x, y = images(20, 32, seed=4), torch.arange(20) % 10
    res = probe_grid.probe_grid(tmp_path, protocol, x, y, seeds=(0, 1), eps=16 / 255, batch_size=10,
                                 log=lambda m: None)
    missing = {m["run"]: m["reason"] for m in res["missing"]}
    assert missing["teacher-ut-s0"] == "no run folder"
    assert missing["vid-tt-s1"] == "finished but student.pt is not there"
    assert missing["rid-tt-s1"] == "no run folder" and "ted-ut-s0" in missing
    df = pd.DataFrame(res["rows"])
    v = df.set_index(["run", "probe", "against"])["value"]
    # the "distilled" student is the teacher: it agrees everywhere, KL 0, CKA 1, fooled by all of its images
    assert v["rid-tt-s0", "agreement", "teacher-tt-s0"] == 1.0
    assert v["rid-tt-s0", "kl", "teacher-tt-s0"] == pytest.approx(0.0, abs=1e-9)
    for i in (1, 2, 3):
        assert v["rid-tt-s0", f"cka_{i}", "teacher-tt-s0"] == pytest.approx(1.0, abs=1e-9)
    kept = df[(df.run == "teacher-tt-s0") & (df.probe == "bim_kept")].value.item()
    assert kept > 0 and v["rid-tt-s0", "fool_teacher", "teacher-tt-s0"] == 1.0
    # its CAMs are the teacher's: it wins on every image where the teacher's map is not empty (ties count half)
    cam_t = probes.grad_cam(teacher, x, y, protocol.norm)
    empty = float((cam_t.norm(dim=1) == 0).double().mean())
    assert v["rid-tt-s0", "localisation", "bas-s1"] == pytest.approx(1.0 - 0.5 * empty)
    # the controls: Ind against Ind, and foreign attackers
    assert ("bas-s0", "localisation", "bas-s1") in v.index and ("bas-s1", "localisation", "bas-s0") in v.index
    assert {("rid-tt-s0", "fool_foreign", "bas-s0"), ("rid-tt-s0", "fool_foreign", "bas-s1"),
            ("bas-s0", "fool_foreign", "bas-s1")} <= set(v.index)
    assert ("bas-s0", "fool_foreign", "bas-s0") not in v.index  # an attacker does not score itself
    assert set(df[df.run == "bas-s0"].cell) == {"BAS"} and set(df[df.run == "rid-tt-s0"].cell) == {"RID-tt"}
    assert set(df.probe) >= {"accuracy", "agreement", "kl", "fool_teacher", "fool_foreign", "invariance_crop_flip",
                             "invariance_jitter", "cam_cos", "cka_1", "localisation", "bim_kept"}
    wide = probe_grid.table(res)
    assert wide.loc[("tt", "RID-tt"), "agreement"] == 1.0 and wide.loc[("-", "BAS"), "fool_foreign"] >= 0
    assert probe_grid.table(res, "count").loc[("tt", "BAS"), "agreement"] == 2  # two seeds
    js, csv = probe_grid.write(res, tmp_path / "out")
    assert json.loads(js.read_text())["rows"] == res["rows"]  # strict JSON: NaN is written as null
    assert len(pd.read_csv(csv)) == len(df) and js.exists()
    assert set(res["seconds"]) >= {"teacher-tt-s0", "bas-s0", "rid-tt-s0", "attack bas-s0"}


def test_partner_seeds():
    from ridrepro.analysis.probe_grid import _partner

    assert _partner(0, [0, 1, 2]) == 1 and _partner(2, [0, 1, 2]) == 0 and _partner(1, [0, 2]) == 2
    assert _partner(0, [0]) is None and _partner(5, [0]) == 0


def test_probes_command_is_registered(capsys):
    from ridrepro.cli import main

    with pytest.raises(SystemExit) as e:
        main(["probes", "--help"])
    assert e.value.code == 0 and "--protocol" in capsys.readouterr().out


def test_probe_grid_reports_a_student_without_its_teacher(tmp_path):
    import json

    from ridrepro.analysis import probe_grid, rdm_curves
    from ridrepro.layout import student_dir
    from ridrepro.models import build_model

    protocol, _ = _fake_grid(tmp_path)
    folder = student_dir(tmp_path, "smoke", "cifd", 0, "ut")  # a finished CIFD-ut run, but no ut teacher
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "finished.json").write_text(json.dumps({"final_acc": 0.1}))
    torch.save(build_model(protocol.student_arch).state_dict(), folder / "student.pt")
    x, y = images(10, 32, seed=5), torch.arange(10) % 10
    res = probe_grid.probe_grid(tmp_path, protocol, x, y, seeds=(0,), methods=("rid", "cifd"), eps=16 / 255,
                                 batch_size=10, log=lambda m: None)
    assert {"run": "cifd-ut-s0", "probe": "all teacher probes", "reason": "its teacher is missing"} in res["missing"]
    # one BAS seed: the Ind-against-Ind control is reported missing, not silently dropped
    assert any(m["run"] == "bas" and "two BAS seeds" in m["reason"] for m in res["missing"])
    rows = [r for r in res["rows"] if r["run"] == "cifd-ut-s0"]
    assert rows and {r["probe"] for r in rows} == {"fool_foreign"} and {r["cell"] for r in rows} == {"CIFD-ut"}
    assert {r["cell"] for r in res["rows"] if r["run"] == "rid-tt-s0"} == {"RID-tt"}


def _fake_data(protocol, n_train=60, n_test=40, seed=0):
    from ridrepro.data import CIFAR10

    g = torch.Generator().manual_seed(seed)
    make = lambda n: (torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),  # noqa: E731
                      torch.arange(n) % 10)
    (tx, ty), (vx, vy) = make(n_train), make(n_test)
    return CIFAR10(tx, ty, vx, vy)


def test_rate_distortion_curves_on_a_fake_grid(tmp_path):
    from ridrepro.analysis import rdm_curves

    protocol, _ = _fake_grid(tmp_path)  # a tt teacher only
    ds = _fake_data(protocol)
    with pytest.raises(ValueError, match="positive"):
        rdm_curves.rate_distortion_curves(tmp_path, protocol, rates=(0.0, 1.0), ds=ds, log=lambda m: None)
    with pytest.raises(ValueError, match="no cifd method"):
        rdm_curves.rate_distortion_curves(tmp_path, "paper-text", ds=ds, log=lambda m: None)
    res = rdm_curves.rate_distortion_curves(tmp_path, protocol, rates=(0.5, 64.0), ds=ds, log=lambda m: None)
    assert res["missing"] == [{"run": "teacher-ut-s0", "reason": "no finished teacher (teacher.json)"}]
    assert [(r["teacher"], r["rate"]) for r in res["rows"]] == [("tt", 0.5), ("tt", 64.0)]
    c = protocol.methods["cifd"].cifd
    assert res["settings"]["hidden"] == c["hidden"] and res["settings"]["epochs"] == c["stage1_epochs"]
    assert res["settings"]["test_images"] == 40
    for r in res["rows"]:
        assert set(r) == set(rdm_curves.RD_COLUMNS) and r["nmse"] >= 0 and 0 <= r["acc"] <= 1
        assert r["red"] >= -1e-9 and r["unit"] == "nats"
    # the rate sets the channel's noise: more nats, less noise
    assert res["rows"][0]["noise_std"] > res["rows"][1]["noise_std"]
