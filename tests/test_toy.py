"""The neural toy (ridrepro.theory.toy): data, teacher and student shapes, independence of the nuisance, and that
the engine's Trainer runs BAS, VID and RID on the toy networks."""

import numpy as np
import pytest
import torch

from ridrepro.pid import mutual_information
from ridrepro.theory.toy import TemplateTeacher, ToyStudent, ToyTask, make_toy_data, templates, toy_protocol
from ridrepro.train.engine import Trainer, build_distiller

TASK = ToyTask()


def test_shapes_and_dtypes():
    d = make_toy_data(TASK, 64, 32, seed=0)
    assert d.train_x.shape == (64, 3, 8, 8) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (32, 3, 8, 8)
    for t, k in ((d.train_y, TASK.n_classes), (d.train_z, TASK.n_nuisance)):
        assert t.dtype == torch.int64 and 0 <= t.min() and t.max() < k
    x = torch.zeros(5, 3, 8, 8)
    logits, taps = TemplateTeacher(TASK)(x, taps=True)
    assert logits.shape == (5, TASK.n_classes) and taps[0].shape == (5, TASK.n_classes + TASK.n_nuisance, 1, 1)
    student = ToyStudent(TASK, width=2)
    logits, taps = student(x, taps=True)
    assert logits.shape == (5, TASK.n_classes) and taps[0].shape == (5, 2, 1, 1)
    assert student.spatial == TemplateTeacher(TASK).spatial == (1,)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (make_toy_data(TASK, 50, 20, seed=s) for s in (3, 3, 4))
    for name in ("train_x", "train_y", "train_z", "test_x", "test_y", "test_z"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.train_x, c.train_x)


def test_templates_are_orthogonal_with_unit_rms():
    p = templates(TASK).flatten(1)
    gram = p @ p.T / TASK.pixels
    assert torch.allclose(gram, torch.eye(len(p), dtype=gram.dtype), atol=1e-12)


def test_nuisance_is_independent_of_the_label():
    d = make_toy_data(TASK, 40000, 10, seed=0)
    counts = np.zeros((TASK.n_classes, TASK.n_nuisance))
    np.add.at(counts, (d.train_y.numpy(), d.train_z.numpy()), 1)
    # plug-in I(Y;Z) of independent variables is ~ (|Y|-1)(|Z|-1) / (2N) nats = 5.6e-4 here
    assert mutual_information(counts / counts.sum(), 0, 1, unit="nats") < 2e-3
    assert abs(counts.sum(1) / counts.sum() - 1 / TASK.n_classes).max() < 0.01


def test_teacher_channels_are_matched_filters():
    # noise-free images: every label channel reads the one-hot label, every nuisance channel gain x one-hot Z
    task = ToyTask(noise=0.0)
    d = make_toy_data(task, 200, 10, seed=1)
    t = TemplateTeacher(task, nuisance_gain=3.0)(((d.train_x.float() / 255) - 0.5) / 0.5, taps=True)[1][0].flatten(1)
    want = torch.cat([torch.nn.functional.one_hot(d.train_y, task.n_classes),
                      3.0 * torch.nn.functional.one_hot(d.train_z, task.n_nuisance)], 1).float()
    assert (t - want).abs().max() < 0.05  # uint8 rounding only
    assert not any(p.requires_grad for p in TemplateTeacher(task).parameters())


@pytest.mark.parametrize("method", ["bas", "vid", "rid"])
def test_one_epoch_of_every_method_on_the_toy(method):
    protocol = toy_protocol(epochs=8, q=8)
    spec = protocol.method(method)
    data = make_toy_data(TASK, 256, 64, seed=0).device_data()
    torch.manual_seed(0)
    teacher = TemplateTeacher(TASK)
    # the engine's own builder works on the toy networks, with RID's heads sized to the toy's classes
    d = build_distiller(spec, ToyStudent(TASK), teacher, num_classes=TASK.n_classes)
    if method == "rid":
        assert all(g[-1].out_features == TASK.n_classes for g in d.g_t)
    tr = Trainer(d, spec, protocol, data, epochs=8, seed=0, device="cpu", augment=False, log=lambda *a: None)
    if method != "bas":
        assert tr.cache is not None and len(tr.cache) == 1  # the one-tap teacher is cached
    rec = tr.train_epoch()
    assert rec["epoch"] == 1 and all(np.isfinite(v) for v in rec["loss"].values())
    assert 0 <= tr.evaluate()["test_acc"] <= 1
