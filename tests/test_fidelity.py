"""The authors' framework side effects (protocols.md divergences 9-13), reproduced by paper-code as data.

9  kaiming_uniform(fan_out, relu) and zero bias on every Conv2d and Linear of the training system;
10 two train-mode forwards per step for BAS, VID and the teacher: two batch-norm momentum updates;
11 RID's student runs forward in train mode in the warm-up filter epochs, so its statistics move;
12 KMeans n_init (tested in test_pid_features through the presets);
13 the untrained teacher is an independent construction.
"""

import copy
import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from ridrepro.data import CIFAR10, synthetic_cifar, to_device
from ridrepro.models import WideResNet
from ridrepro.models.forward import prepare
from ridrepro.models.weights import load_teacher
from ridrepro.pid.features import PRESETS
from ridrepro.protocols import PROTOCOLS, SMOKE
from ridrepro.train.engine import Trainer, build_distiller
from ridrepro.train.runs import Options, ensure_teacher


def kaiming_bound(weight):
    fan_out = weight.shape[0] * weight[0, 0].numel() if weight.ndim > 2 else weight.shape[0]
    return math.sqrt(2.0) * math.sqrt(3.0 / fan_out)


@pytest.mark.parametrize("method", ["vid", "rid", "ted"])
@pytest.mark.parametrize("protocol", ["paper-code", "paper-text"])
def test_every_filter_head_and_regressor_gets_the_authors_init(protocol, method):
    torch.manual_seed(0)
    p = PROTOCOLS[protocol]
    d = build_distiller(p.method(method), WideResNet(10, 1), WideResNet(10, 2), extras_init=p.extras_init)
    layers = [(i, m) for i, extra in enumerate(d.extras()) for m in extra.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) >= 6  # three taps, two or more layers each
    for i, m in layers:
        bound = kaiming_bound(m.weight)
        w = m.weight.abs().max().item()
        # uniform on [-bound, bound]: thousands of draws come within 5 % of the bound, none beyond it
        assert 0.95 * bound <= w <= bound, (i, m, w, bound)
        assert m.bias is None or not m.bias.any()


def test_torch_init_is_what_the_authors_init_replaces():
    torch.manual_seed(0)
    d = build_distiller(PROTOCOLS["cpu-preview"].method("rid"), WideResNet(10, 1), WideResNet(10, 2),
                        extras_init=PROTOCOLS["cpu-preview"].extras_init)
    head = d.g_t[0][-1]  # Linear(16 * 32 * 32 -> 10): PyTorch's bound is 1 / sqrt(fan_in)
    assert head.weight.abs().max().item() <= 1 / math.sqrt(head.in_features)
    assert kaiming_bound(head.weight) > 40 / math.sqrt(head.in_features)
    assert head.bias.abs().max().item() > 0
    with pytest.raises(ValueError, match="extras_init"):
        build_distiller(PROTOCOLS["paper-code"].method("rid"), WideResNet(10, 1), WideResNet(10, 1),
                        extras_init="kaiming")


def one_batch_data(n=64):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = (torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    return CIFAR10(x, y, x[:10], y[:10])


def bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("method", ["bas", "vid", "teacher"])
def test_paper_code_moves_batch_norm_statistics_twice_per_step(method):
    protocol = replace(SMOKE, batch_size=64)
    spec = PROTOCOLS["paper-code"].method(method)
    assert spec.bn_updates == 2 and protocol.method(method).bn_updates == 2
    ds = one_batch_data()
    torch.manual_seed(0)
    student = WideResNet(10, 1)
    reference = copy.deepcopy(student).train().to(memory_format=torch.channels_last)  # as the Trainer runs it
    teacher = None if method in ("bas", "teacher") else WideResNet(10, 1)
    d = build_distiller(spec, student, teacher)
    spec = replace(spec, optim={"student": replace(spec.optim["student"], lr=0.0)})  # statistics only
    tr = Trainer(d, spec, protocol, to_device(ds, "cpu"), epochs=1, seed=0, device="cpu", augment=False,
                 log=lambda *a: None)
    tr.train_epoch()  # one step: the whole data set is one batch
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))  # the Trainer's first epoch order
    x = prepare(ds.train_x[order], protocol.norm)
    with torch.no_grad():
        reference(x)
        once = bn_buffers(reference)
        reference(x)
    twice, got = bn_buffers(reference), bn_buffers(student)
    for k in twice:  # the same batch in the same order through the same weights: equal to the last bit
        assert torch.equal(got[k], twice[k]), k
    assert got["bn1.num_batches_tracked"] == 2
    assert not torch.allclose(got["bn1.running_mean"], once["bn1.running_mean"])


@pytest.mark.parametrize("protocol,moves", [("paper-code", True), ("cpu-preview", False)])
def test_rid_student_runs_in_warmup_epochs_under_paper_code(protocol, moves):
    spec = PROTOCOLS[protocol].method("rid")
    assert spec.rid["student_forward_in_warmup"] is moves
    torch.manual_seed(0)
    d = build_distiller(spec, WideResNet(10, 1), WideResNet(10, 1))
    before = bn_buffers(d.student)
    weights = {k: v.clone() for k, v in d.student.state_dict().items() if k not in before}
    tr = Trainer(d, spec, replace(SMOKE, batch_size=64), to_device(one_batch_data(), "cpu"), epochs=1, seed=0,
                 device="cpu", augment=False, log=lambda *a: None)
    rec = tr.train_epoch()
    assert rec["phase"] == "warmup" and rec["active"] == ["filter"]
    after = bn_buffers(d.student)
    assert any(not torch.equal(before[k], after[k]) for k in before) is moves
    assert (rec["train_acc"] is not None) is moves
    for k, v in d.student.state_dict().items():  # the student is not trained in warm-up either way
        if k in weights:
            assert torch.equal(v, weights[k]), k


def test_untrained_teacher_is_an_independent_construction(tmp_path):
    opts = Options(tmp_path, log=lambda *a: None)
    ds = synthetic_cifar(20, 10)
    ensure_teacher(SMOKE, ds, "ut", 0, opts)
    ut, info = load_teacher(tmp_path / "smoke" / "teacher-ut-s0")
    assert info["init_seed"] == SMOKE.ut_init_offset == 1000
    torch.manual_seed(0)
    tt_start = WideResNet(*SMOKE.teacher_arch[:2], block=SMOKE.teacher_arch[2]).state_dict()
    assert not torch.equal(ut.state_dict()["conv1.weight"], tt_start["conv1.weight"])
    torch.manual_seed(1000)
    assert torch.equal(ut.state_dict()["conv1.weight"], WideResNet(10, 1).state_dict()["conv1.weight"])
    legacy = replace(SMOKE, name="legacy", ut_init_offset=0)  # cpu-preview's setting
    ensure_teacher(legacy, ds, "ut", 0, opts)
    old, info = load_teacher(tmp_path / "legacy" / "teacher-ut-s0")
    assert info["init_seed"] == 0 and torch.equal(old.state_dict()["conv1.weight"], tt_start["conv1.weight"])
    assert json.loads((tmp_path / "smoke" / "teacher-ut-s0" / "teacher.json").read_text())["init_seed"] == 1000


def test_kmeans_restarts_per_protocol():
    assert PRESETS["paper-code"]["kmeans_n_init"] == 1  # scikit-learn's default since 1.4
    assert PRESETS["paper-text"]["kmeans_n_init"] == 10
    assert PROTOCOLS["cpu-preview"].pid_overrides == {"kmeans_n_init": 10}  # what its grid ran with


def test_paper_text_rid_sums_as_the_paper_writes():
    from ridrepro.distill.rid import rid_filter_term, rid_student_term
    ft, fs = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    sigma = torch.full((1, 3, 1, 1), 2.0)
    # V^2 / sigma = 0.5 per element; 3 x 4 x 4 = 48 elements per image; ||sigma||^2 = 12
    assert rid_filter_term(ft, fs, sigma, "sum").item() == 24.0
    assert rid_student_term(ft, fs, sigma, "sum").item() == 12.0 + 24.0
    assert rid_filter_term(ft, fs, sigma).item() == 0.5 and rid_student_term(ft, fs, sigma).item() == 4.5
    spec = PROTOCOLS["paper-text"].method("rid")
    assert spec.rid["reduction"] == "sum" and spec.lam == (1.0, 10.0 / 4096)
    assert PROTOCOLS["paper-code"].method("rid").rid.get("reduction", "mean") == "mean"
