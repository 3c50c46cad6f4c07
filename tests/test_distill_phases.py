"""Phase by phase: which epochs are which phase, which parameters get gradients, a frozen eval teacher."""

import pytest
import torch

from ridrepro.models import WideResNet
from ridrepro.protocols import PROTOCOLS
from ridrepro.train.engine import build_distiller


def phases(protocol, method):
    m = PROTOCOLS[protocol].method(method)
    d = build_distiller(m, WideResNet(10, 1), WideResNet(10, 1))
    return [d.phase(e) for e in range(PROTOCOLS[protocol].epochs_of(method))]


def test_paper_code_rid_cycles():
    p = phases("paper-code", "rid")
    # cycle 0: epochs 0..7 filter heads only (the code's warm-up), 8..29 student
    assert p[:8] == ["warmup"] * 8 and p[8:30] == ["student"] * 22
    # later cycles: epochs 0..7 of the cycle train the filter with the distillation term
    assert p[30:38] == ["filter"] * 8 and p[38:60] == ["student"] * 22
    assert p.count("student") == 220 and p.count("filter") == 72 and len(p) == 300


def test_paper_code_ted_is_rid_with_one_cycle():
    p = phases("paper-code", "ted")
    assert p[:38] == ["warmup"] * 38 and set(p[38:]) == {"student"}


def test_paper_text_rid_warmup_then_cycles():
    p = phases("paper-text", "rid")
    assert p[:30] == ["warmup"] * 30
    assert p[30:38] == ["filter"] * 8 and p[38:60] == ["student"] * 22 and p[60] == "filter"
    assert p.count("student") == 9 * 22


def test_paper_text_ted_stages():
    p = phases("paper-text", "ted")
    assert p[:30] == ["stage1"] * 30 and set(p[30:]) == {"stage2"}


def test_cpu_preview_keeps_r_one_quarter_and_ten_cycles():
    p = phases("cpu-preview", "rid")
    assert p[:8] == ["warmup"] * 2 + ["student"] * 6
    assert p[8:16] == ["filter"] * 2 + ["student"] * 6
    assert len(p) == 80 and p.count("student") == 60


CASES = [("vid", "train"), ("rid", "warmup"), ("rid", "filter"), ("rid", "student"),
         ("ted", "stage1"), ("ted", "stage2"), ("bas", "train")]


@pytest.mark.parametrize("method,phase", CASES)
def test_only_the_phase_groups_receive_gradients(method, phase):
    torch.manual_seed(0)
    proto = PROTOCOLS["paper-text"]  # paper-text has the two-stage TED class
    teacher = WideResNet(10, 2)
    d = build_distiller(proto.method(method), WideResNet(10, 1), None if method == "bas" else teacher)
    d.train()
    x, y = torch.randn(6, 3, 32, 32), torch.arange(6) % 10
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    t_taps = d.teacher_taps(x) if d.uses_teacher else None
    loss, _, _ = d.loss(x, y, t_taps, phase)
    loss.backward()
    groups = d.param_groups()
    active = {id(p) for g in d.phase_groups(phase) for p in groups[g]}
    named = dict(d.named_parameters())
    for name, p in named.items():
        if id(p) in active:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} should learn in {phase}"
        else:
            assert p.grad is None, f"{name} must not get a gradient in {phase}"
    if method != "bas":
        assert not any(p.requires_grad for p in teacher.parameters())
        assert not teacher.training
        for k, v in teacher.state_dict().items():  # BN running statistics untouched
            assert torch.equal(v, teacher_state[k]), k


def test_teacher_stays_in_eval_mode():
    d = build_distiller(PROTOCOLS["paper-code"].method("rid"), WideResNet(10, 1), WideResNet(10, 1).train())
    assert not d.teacher.training
    d.train()
    assert d.student.training and d.f_t.training and not d.teacher.training
    d.student.train()
    assert not d.teacher.training
    d.eval()
    d.train(True)
    assert not d.teacher.training and all(not m.training for m in d.teacher.modules())


def test_bas_never_runs_the_teacher():
    d = build_distiller(PROTOCOLS["paper-code"].method("bas"), WideResNet(10, 1))
    assert d.teacher is None and not d.uses_teacher
