"""The RID teacher filter's death under the authors' init (issue 23), at smoke scale.

With kaiming_uniform(fan_out) heads the filter phase starts at a huge cross-entropy; at the filter optimiser's
0.05 its outputs are pushed below zero, the head's ReLU then passes nothing and no classification gradient
reaches the filter again. PyTorch's default init keeps a share of them positive."""

from dataclasses import replace

import pytest
import torch

from ridrepro.data import synthetic_cifar, to_device
from ridrepro.models import build_model
from ridrepro.protocols import SMOKE
from ridrepro.train.engine import Trainer, build_distiller


def filter_phase(extras_init, epochs=3, seed=0):
    """The per-epoch records of a RID run that trains only its teacher filter (smoke networks and data)."""
    torch.manual_seed(seed)
    teacher, student = build_model(SMOKE.teacher_arch), build_model(SMOKE.student_arch)
    spec = replace(SMOKE.methods["rid"], rid=dict(SMOKE.methods["rid"].rid, cycles=1, q=epochs, r=0.99))
    d = build_distiller(spec, student, teacher, extras_init=extras_init)
    trainer = Trainer(d, spec, SMOKE, to_device(synthetic_cifar(), "cpu"), epochs=epochs, seed=seed, device="cpu",
                      augment=False, log=lambda *a: None)
    return [trainer.train_epoch() for _ in range(epochs)]


@pytest.fixture(scope="module")
def runs():
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        return {init: filter_phase(init) for init in ("authors", "torch")}


def test_the_filter_dies_under_the_authors_init(runs):
    first, last = runs["authors"][0]["diag"], runs["authors"][-1]["diag"]
    assert all(r["phase"] != "student" for r in runs["authors"])
    assert first["head_ce"][0] > 5  # the heads start far above chance (ln 10 = 2.3)
    positive = last["filter_positive"]
    assert positive[0] < 1e-4, positive  # the first layer's filter passes practically nothing in its last epoch
    assert max(positive) < 0.01, positive  # nor do the others: under 1 % of outputs in every layer
    assert min(last["head_ce"]) > 1.0, last["head_ce"]  # the dead heads learn nothing


def test_the_filter_stays_alive_under_torchs_init(runs):
    positive = runs["torch"][-1]["diag"]["filter_positive"]
    assert sum(positive) / len(positive) > 0.15, positive
    assert min(runs["torch"][-1]["diag"]["head_ce"]) < 1.0  # and the heads learn the synthetic classes
