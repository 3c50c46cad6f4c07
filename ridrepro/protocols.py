"""Protocols as data: every hyperparameter of a grid in one object, no branches in the training loop.

paper-code is what the authors' code (kd-rid, commit 3f8151a) ran, each departure from the paper's text tagged
"divergence N" (row N of the table in book/reproducibility.md); paper-text is what the paper states, with CHOICE
where it is silent; cpu-preview, cpu-4k and paper-code-4k size paper-code for a 2-core CPU (cpu-4k-decay: a post-hoc
ablation of cpu-4k); smoke is for tests.
Why each is set as it is: book/reproducibility.md. Epochs are 0-based inside the code; `pid_epochs` and metrics
count completed epochs (1-based).
"""

from dataclasses import asdict, dataclass, field, fields, replace

from ridrepro.data import CIFAR10_NORM, PAPER_CODE_NORM


@dataclass(frozen=True)
class Schedule:
    """Learning rate of epoch e = lr * factor(e), expressed as a LambdaLR.

    Factor = gamma ** (number of milestones <= e - lag). `squared`: the lambda returns lr * factor
    and PyTorch multiplies by lr again (lr_eff = lr^2 * factor). `stepped=False`: the scheduler is built
    (which applies factor(0) once) but never stepped.
    """
    milestones: tuple = ()
    gamma: float = 1.0
    squared: bool = False
    lag: int = 0
    stepped: bool = True
    # "onecycle": torch's OneCycleLR stepped after every optimiser step instead (the fields above are then
    # unused): linear warm-up from lr / div over the first `warmup` fraction of the run's steps, then linear
    # decay to lr / final_div; momentum is not cycled.
    kind: str = "epoch"  # epoch | onecycle
    warmup: float = 0.0
    div: float = 10.0
    final_div: float = 100.0


@dataclass(frozen=True)
class Optim:
    kind: str = "sgd"  # sgd | adam
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Schedule = Schedule()


@dataclass(frozen=True)
class Method:
    kind: str  # bas | vid | rid | ted | cifd | teacher
    optim: dict  # parameter-group name -> Optim
    clip: float | None = None  # gradient-norm clipping per optimiser
    lam: tuple = ()  # loss weights: vid (lambda,), rid (lambda1, lambda2), ted (lambda,)
    rid: dict = field(default_factory=dict)  # warmup, cycles, q, r, filter_distil_from_cycle
    ted_stage1_epochs: int = 0
    init_from: str | None = None  # "bas": start from the trained BAS student of the same seed
    epochs: int | None = None  # None: the protocol's student epochs
    # Train-mode forwards of the student per step; 2 is Lightning's training_step + predict_step (divergence 10).
    bn_updates: int = 1


@dataclass(frozen=True)
class CIFDMethod(Method):
    """A Method with CIFD's own settings (ridrepro.distill.cifd). A subclass, not a new Method field, so that the
    other methods' specs, and with them the identities of their committed runs, stay what they were.

    lam = (w_ce, w_kd, w_rdm, w_ibm); cifd: rates (nats, one RDM each), d_z, hidden, d_ib, beta_ib, tau,
    stage1_epochs. Parameter groups: "rdm" (stage 1) and "student" (the student and the IBM, stage 2)."""
    cifd: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    name: str
    teacher_arch: tuple  # (depth, width, block)
    student_arch: tuple
    teacher: Method
    epochs: int
    methods: dict  # bas, vid, rid, ted -> Method
    batch_size: int = 128
    eval_batch_size: int = 1000
    augment: bool = False
    teacher_augment: bool = False
    norm: tuple = PAPER_CODE_NORM
    teacher_shuffle: str = "epoch"  # "epoch": a new permutation each epoch; "fixed": one permutation for all
    teacher_data: str = "students"  # the teacher's training images: "students" (the students' subset) | "all"
    train_per_class: int | None = None  # None = the whole split
    test_per_class: int | None = None
    subset_seed: int = 0
    pid_epochs: tuple = ()
    # Test accuracy after every eval_every-th epoch, and always after PID epochs and the last epoch.
    eval_every: int = 1
    # PCA components (of L2-normalised rows, float16) of the PID layer's test outputs stored at PID epochs; 0: none.
    store_pca: int = 0
    pid_preset: str = "paper-code"
    pid_layer: int = 2  # 0-based group index: 2 = third group output (teacher 128x8x8, student 64x8x8)
    pid_overrides: dict = field(default_factory=dict)  # settings that replace the preset's, e.g. kmeans_n_init
    # Init of the method's own modules: "torch" (PyTorch's defaults) | "authors" (kaiming fan_out, divergence 9).
    extras_init: str = "torch"
    # ut teacher's torch seed = teacher seed + this: 0 is the tt teacher's start, an offset above every seed an
    # independent construction (divergence 13).
    ut_init_offset: int = 0
    notes: str = ""

    def method(self, name):
        if name == "teacher":
            return self.teacher
        if name not in self.methods:
            raise ValueError(f"protocol {self.name} has no method {name!r}; choose from {sorted(self.methods)}")
        return self.methods[name]

    def epochs_of(self, name):
        m = self.method(name)
        return m.epochs if m.epochs is not None else self.epochs

    def to_dict(self):
        return asdict(self)

    @property
    def teacher_home(self):
        """The protocol whose run folders hold this protocol's teachers."""
        return self.name

    def check_teacher(self, kind, info):
        """A finished teacher this protocol may use (BorrowedTeachers pins them by sha256)."""


@dataclass(frozen=True)
class BorrowedTeachers(Protocol):
    """A protocol whose teachers are another protocol's committed ones, pinned by sha256 and never trained. A
    subclass, not new Protocol fields, so that the committed runs' identities stay what they were."""
    teacher_from: str = ""
    teacher_sha256: dict = field(default_factory=dict)  # teacher kind -> sha256 of its teacher.pt

    @property
    def teacher_home(self):
        return self.teacher_from

    def check_teacher(self, kind, info):
        want = self.teacher_sha256.get(kind)
        if info["sha256"] != want:
            raise ValueError(f"protocol {self.name} uses {self.teacher_from}'s teacher-{kind} with sha256 "
                             f"{str(want)[:12]}..., found {info['sha256'][:12]}...; restore the committed "
                             f"results/{self.teacher_from}/teacher-{kind}-s0")


def borrow_teachers(protocol, teacher_from, teacher_sha256, **changes):
    """`protocol` with `changes`, as a BorrowedTeachers protocol using teacher_from's pinned teachers."""
    base = {f.name: getattr(protocol, f.name) for f in fields(Protocol)}
    return BorrowedTeachers(**{**base, **changes}, teacher_from=teacher_from, teacher_sha256=teacher_sha256)


# ----------------------------------------------------------------------------- paper-code

# Divergence 1: LambdaLR multiplies lr twice (0.05 -> 0.0025), and each drop lands one epoch late.
_CODE_SQUARED = Schedule(milestones=(150, 200), gamma=0.2, squared=True, lag=1)
# Divergence 2: RID and TED use manual optimisation and never step the scheduler: 0.0025 for all epochs.
_CODE_UNSTEPPED = Schedule(milestones=(150, 200), gamma=0.2, squared=True, lag=1, stepped=False)
_SGD = Optim()  # SGD, momentum 0.9, Nesterov, weight decay 5e-4, lr 0.05 (protocols.md section 1)
_CODE_STUDENT = replace(_SGD, schedule=_CODE_SQUARED)
_CODE_RID_OPTIM = {
    "student": replace(_SGD, schedule=_CODE_UNSTEPPED),  # divergence 2: stays at 0.0025
    "filter": _SGD,  # divergence 2: the teacher-filter optimiser has no scheduler: 0.05 throughout
}
# Divergence 11: the student runs forward in train mode in every filter epoch, the first cycle's included.
_CODE_RID = dict(warmup=0, cycles=10, q=30, r=0.25, filter_distil_from_cycle=1, student_forward_in_warmup=True)

PAPER_CODE = Protocol(
    name="paper-code",
    teacher_arch=(40, 2, "post"),
    student_arch=(16, 1, "post"),
    # Divergence 4: Adam, lr 0.05, no weight decay, no schedule, 300 epochs, cross-entropy, no clipping.
    # Divergence 10: two batch-norm updates per step for the teacher, BAS and VID.
    teacher=Method("teacher", {"student": Optim("adam", lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0)},
                   bn_updates=2),
    epochs=300,
    methods={
        "bas": Method("bas", {"student": _CODE_STUDENT}, clip=None, bn_updates=2),  # divergences 5, 10
        "vid": Method("vid", {"student": _CODE_STUDENT}, clip=100.0, lam=(100.0,), bn_updates=2),  # 5, 10
        "rid": Method("rid", _CODE_RID_OPTIM, clip=100.0, lam=(1.0, 10.0), rid=_CODE_RID),  # divergences 2, 5, 11
        # Divergence 6: "TED" is RID with one cycle, r = 1/8 (filter epochs 0..37), from scratch; 2 and 11 apply.
        "ted": Method("rid", _CODE_RID_OPTIM, clip=100.0, lam=(1.0, 10.0),
                      rid=dict(_CODE_RID, cycles=1, q=300, r=0.125)),
    },
    augment=False, teacher_augment=False,  # divergence 3: no augmentation
    norm=PAPER_CODE_NORM,  # divergence 3: Normalize(0.5, 0.5)
    # Divergence 3: an unshuffled teacher loader = one fixed mixed order (why: book/reproducibility.md, "paper-code").
    teacher_shuffle="fixed",
    # Divergence 7: PID after epochs 1, 21, ..., 281 (current_epoch % 20 == 0), test set, third group, PCA 5.
    pid_epochs=tuple(range(1, 301, 20)),
    pid_preset="paper-code",
    # Divergence 12: the preset's KMeans n_init = 1, scikit-learn's default since 1.4 (ridrepro.pid.features).
    extras_init="authors",  # divergence 9
    ut_init_offset=1000,  # divergence 13: two independent constructions
    # Divergence 8: the test set doubles as the validation set; the engine reports test accuracy for every protocol.
    notes="What the authors' code ran (kd-rid 3f8151a), every divergence of protocols.md section 4 reproduced.",
)

# ----------------------------------------------------------------------------- paper-text

_TEXT_SCHEDULE = Schedule(milestones=(150, 200), gamma=0.2)  # 0.05 -> 0.01 at 150 -> 0.002 at 200
_TEXT_SGD = replace(_SGD, schedule=_TEXT_SCHEDULE)
PAPER_TEXT = Protocol(
    name="paper-text",
    teacher_arch=(40, 2, "post"),
    student_arch=(16, 1, "post"),
    # CHOICE: the paper does not say how the teacher was trained; the standard SGD recipe with its schedule.
    teacher=Method("teacher", {"student": _TEXT_SGD}),
    epochs=300,
    methods={
        "bas": Method("bas", {"student": _TEXT_SGD}),
        "vid": Method("vid", {"student": _TEXT_SGD}, lam=(100.0,)),
        # Algorithm 1 + Appendix C: 30 warm-up epochs, then 9 cycles of q = 30, r = 1/4; eqs. 11 and 13 summed.
        # CHOICE: lambda2 = 10 / 4096, paper-code's per-element weight (book/reproducibility.md, "Sums or means").
        # CHOICE: the student does not run in warm-up epochs (divergence 11 is a side effect of the code).
        "rid": Method("rid", {"student": _TEXT_SGD, "filter": _TEXT_SGD}, lam=(1.0, 10.0 / 4096),
                      rid=dict(warmup=30, cycles=9, q=30, r=0.25, filter_distil_from_cycle=0, reduction="sum",
                               student_forward_in_warmup=False)),
        # Appendix B.2 / section 5: TED fine-tunes the trained BAS student of the same seed.
        # CHOICE: stage 1 = 30 epochs (as RID's warm-up), stage 2 = the remaining 270; lambda = 10 (the code's).
        "ted": Method("ted", {"t_filter": _TEXT_SGD, "s_filter": _TEXT_SGD, "student": _TEXT_SGD},
                      lam=(10.0,), ted_stage1_epochs=30, init_from="bas"),
    },
    # CHOICE: augmentation is unstated; the standard crop (pad 4) + flip, CIFAR-10 normalisation, reshuffling.
    augment=True, teacher_augment=True, norm=CIFAR10_NORM, teacher_shuffle="epoch",
    # Appendix C: PID on the test set, 10 PCA components, 10 clusters. CHOICE: every 20 epochs, ending at 300.
    pid_epochs=tuple(range(20, 301, 20)),
    pid_preset="paper-text",  # CHOICE: KMeans n_init = 10 (the paper is silent; ten restarts vary less)
    # CHOICE (divergence 9): the authors' init for the method's modules too.
    # CHOICE (divergence 10): one batch-norm update per step, the method's own.
    extras_init="authors",
    ut_init_offset=1000,  # CHOICE (divergence 13): independent constructions, as the code has
    notes="What the paper states (protocols.md section 5); CHOICE comments mark what it leaves open.",
)

# ----------------------------------------------------------------------------- cpu-preview

# paper-code scaled to a 2-core CPU, fewer images first, then fewer epochs; what is not set here is paper-code's.
# Sizing and pilots: book/reproducibility.md, "cpu-preview".
_P_EPOCHS = 80  # paper-code 300; a BAS pilot levelled off by epoch ~15
_P_TEACHER_EPOCHS = 40  # paper-code 300; the grid's longest task, which every tt cell waits for
_P_SQUARED = replace(_CODE_SQUARED, milestones=(40, 53))  # paper-code (150, 200): the same fractions 1/2, 2/3
_P_STUDENT = replace(_SGD, schedule=_P_SQUARED)
_P_RID_OPTIM = {"student": replace(_SGD, schedule=replace(_P_SQUARED, stepped=False)), "filter": _SGD}

# The one recipe change, fixed before any student ran: at lr 0.05 this teacher stays at chance, so it takes its BAS
# student's recipe, plus crop + flip and reshuffling (why: book/reproducibility.md, "cpu-preview").
_P_TEACHER = Method("teacher", {"student": replace(_P_STUDENT, schedule=replace(_P_SQUARED, milestones=(20, 27)))},
                    epochs=_P_TEACHER_EPOCHS)

# Divergences 9-13 not reproduced: the settings its committed grid (results/cpu-preview) ran with.
_P_PRE_FIDELITY = dict(student_forward_in_warmup=False)  # divergence 11 not reproduced
CPU_PREVIEW = replace(
    PAPER_CODE,
    name="cpu-preview",
    teacher=_P_TEACHER,  # one batch-norm update per step (divergence 10 not reproduced)
    teacher_augment=True,
    teacher_shuffle="epoch",
    epochs=_P_EPOCHS,
    methods={  # bn_updates = 1: divergence 10 not reproduced
        "bas": replace(PAPER_CODE.methods["bas"], optim={"student": _P_STUDENT}, bn_updates=1),
        "vid": replace(PAPER_CODE.methods["vid"], optim={"student": _P_STUDENT}, bn_updates=1),
        # q = 8 (paper-code 30) keeps 10 cycles and r = 1/4 exactly: epochs 0,1 filter, 2..7 student.
        "rid": replace(PAPER_CODE.methods["rid"], optim=_P_RID_OPTIM, rid=dict(_CODE_RID, q=8, **_P_PRE_FIDELITY)),
        # one cycle of 80 (paper-code 300), r = 1/8: epochs 0..9 filter, then student.
        "ted": replace(PAPER_CODE.methods["ted"], optim=_P_RID_OPTIM,
                       rid=dict(PAPER_CODE.methods["ted"].rid, q=80, **_P_PRE_FIDELITY)),
    },
    pid_overrides={"kmeans_n_init": 10},  # divergence 12: the grid's PID records used 10 restarts
    extras_init="torch",  # divergence 9 not reproduced
    ut_init_offset=0,  # divergence 13 not reproduced: the ut teacher is the tt teacher's initial weights
    train_per_class=150,  # paper-code 5000 (1,500 of 50,000 images, class-balanced, subset seed 0)
    # paper-code 1000; speed only (eval mode is per-image, and a CPU thread evaluates batches of 128 twice as fast).
    eval_batch_size=128,
    test_per_class=200,  # paper-code 1000 (2,000 of 10,000 test images; PID and accuracy use the same)
    pid_epochs=(1, 11, 21, 31, 41, 51, 61, 71, 80),  # paper-code every 20 of 300 from epoch 1; here every 10 + last
    notes="paper-code scaled to a 2-core CPU grid of <= 2.5 h; every reduction is commented in protocols.py.",
)

# ----------------------------------------------------------------------------- cpu-4k

# The full-scale grid for a 2-core CPU (issue 12), at most 16 core-hours: a 50,000-image teacher, students on 4,000
# images, the whole test set; what is not set here is paper-code's, divergences 9-13 included.
# Sizing and each choice: book/reproducibility.md, "cpu-4k".
# CHOICE: a short standard SGD recipe for the teacher (paper-code's Adam for 300 epochs: ~550 core-hours here).
_K_TEACHER = Method(
    "teacher",
    {"student": replace(_SGD, lr=0.1, schedule=Schedule(kind="onecycle", warmup=0.15, div=10.0, final_div=1000.0))},
    epochs=6)
_K_EPOCHS = 40
# CHOICE: the students' lr is the paper's unsquared 0.05 with divergence 1's late drops, as two BAS pilots decided
# (results/cpu-4k/pilots); RID's and TED's keep divergence 2, so 0.05 throughout.
_K_LR = replace(_CODE_SQUARED, milestones=(20, 27), squared=False)  # paper-code (150, 200) of 300: 1/2, 2/3
_K_STUDENT = replace(_SGD, schedule=_K_LR)
_K_RID_OPTIM = {"student": replace(_SGD, schedule=replace(_K_LR, stepped=False)), "filter": _SGD}
# CIFD (issue 14): not in the paper; its student takes VID's settings, and its first stage1_epochs train the RDMs.
# CHOICE: rates 1, 4, 16, 64 nats around the label's ln 10, sizes, stage 1 and weights (book/engine.md, "CIFD").
_CIFD = dict(rates=(1.0, 4.0, 16.0, 64.0), d_z=32, hidden=256, d_ib=64, beta_ib=0.01, tau=4.0, stage1_epochs=4)
_RDM_ADAM = Optim("adam", lr=3e-3, momentum=0.0, nesterov=False, weight_decay=0.0)


def _cifd(student_optim, clip, **settings):
    return CIFDMethod("cifd", {"student": student_optim, "rdm": _RDM_ADAM}, clip=clip, lam=(1.0, 1.0, 1.0, 1.0),
                      cifd=dict(_CIFD, **settings))


CPU_4K = replace(
    PAPER_CODE,
    name="cpu-4k",
    teacher=_K_TEACHER,
    teacher_augment=True,
    teacher_shuffle="epoch",
    teacher_data="all",
    epochs=_K_EPOCHS,
    methods={
        "bas": replace(PAPER_CODE.methods["bas"], optim={"student": _K_STUDENT}),
        "vid": replace(PAPER_CODE.methods["vid"], optim={"student": _K_STUDENT}),
        # q = 4 keeps 10 cycles and r = 1/4 exactly: one filter epoch, then three student epochs
        "rid": replace(PAPER_CODE.methods["rid"], optim=_K_RID_OPTIM, rid=dict(_CODE_RID, q=4)),
        # one cycle of 40, r = 1/8: epochs 0..4 filter, then student
        "ted": replace(PAPER_CODE.methods["ted"], optim=_K_RID_OPTIM, rid=dict(PAPER_CODE.methods["ted"].rid, q=40)),
        # VID's optimiser, schedule and clipping; CHOICE: one batch-norm update per step (divergence 10 not applied).
        # Epochs 0..3 the RDMs, 4..39 the student.
        "cifd": _cifd(_K_STUDENT, 100.0),
    },
    train_per_class=400,  # paper-code 5000, for the students
    test_per_class=None,  # the whole test set, as paper-code
    eval_batch_size=128,  # speed only (see cpu-preview)
    # paper-code: every epoch; a 10,000-image evaluation costs a student a tenth of a training epoch.
    eval_every=4,
    pid_epochs=(1, *range(4, 41, 4)),  # 11 records per teacher, each read from its epoch's evaluation
    pid_overrides={"null": 100},  # a shuffled-label null per record; KMeans n_init 1 (divergence 12)
    store_pca=50,
    notes="paper-code's students on 4,000 training images and the whole test set, a 50,000-image teacher; "
          "sized to 16 core-hours on a 2-core CPU (protocols.py).",
)

# ----------------------------------------------------------------------------- paper-code-4k

# paper-code's recipe exactly on cpu-4k's 4,000 images, with cpu-4k's committed teachers pinned by sha256 (issue 23);
# only evaluation differs (why: book/reproducibility.md, "paper-code-4k").
PAPER_CODE_4K = borrow_teachers(
    PAPER_CODE, "cpu-4k",
    {"tt": "1d8d3b1bfe9e509d801639c5c276f9006eceb2d734068c94cb60c645ebdd252e",
     "ut": "5b0494a450acbab180f82da8448014032d682f8993d79746bde930f1fa73f770"},
    name="paper-code-4k",
    teacher=CPU_4K.teacher, teacher_augment=CPU_4K.teacher_augment, teacher_shuffle=CPU_4K.teacher_shuffle,
    teacher_data=CPU_4K.teacher_data,  # cpu-4k's teacher recipe, recorded; never run here
    train_per_class=400, test_per_class=None, subset_seed=0,  # cpu-4k's students' subset and the whole test set
    eval_batch_size=128,  # speed only
    eval_every=10,  # still >= 3 evaluations in the last 10 % of epochs, where claims are read
    pid_overrides={"null": 100},
    store_pca=50,
    notes="paper-code's students on cpu-4k's 4,000 images with cpu-4k's committed teachers (issue 23).",
)
# The mechanism control: PyTorch's default init for RID's filters and heads, everything else paper-code-4k's.
PAPER_CODE_4K_TORCH_INIT = replace(PAPER_CODE_4K, name="paper-code-4k-torch-init", extras_init="torch",
                                   notes="paper-code-4k with PyTorch-initialised filters and heads (issue 23, block c).")

# ----------------------------------------------------------------------------- cpu-4k-decay

# POST HOC (issue 23, part 5), chosen after cpu-4k's results: cpu-4k with RID's and TED's students stepped on BAS's
# and VID's schedule (drops after epochs 20 and 27), so that no method keeps 0.05 to the end. It says how much of
# cpu-4k's RID and TED result is that missing decay. Teachers and everything else are cpu-4k's.
_K_STEPPED_OPTIM = {"student": _K_STUDENT, "filter": _SGD}
CPU_4K_DECAY = borrow_teachers(
    CPU_4K, "cpu-4k", PAPER_CODE_4K.teacher_sha256,
    name="cpu-4k-decay",
    methods={m: replace(CPU_4K.methods[m], optim=_K_STEPPED_OPTIM) for m in ("rid", "ted")},
    notes="post hoc: cpu-4k with RID's and TED's students decayed as BAS's and VID's are (issue 23, part 5).",
)

# ----------------------------------------------------------------------------- smoke

_S_SQUARED = replace(_CODE_SQUARED, milestones=(2, 3))
_S_RID_OPTIM = {"student": replace(_SGD, schedule=replace(_S_SQUARED, stepped=False)), "filter": _SGD}
SMOKE = replace(
    PAPER_CODE,
    name="smoke",
    teacher_arch=(10, 1, "post"),
    student_arch=(10, 1, "post"),
    teacher=replace(PAPER_CODE.teacher, epochs=2),
    epochs=4,
    methods={  # paper-code's divergences 9-13 too (bn_updates, the warm-up forward; init and ut from PAPER_CODE)
        "bas": Method("bas", {"student": replace(_SGD, schedule=_S_SQUARED)}, bn_updates=2),
        "vid": Method("vid", {"student": replace(_SGD, schedule=_S_SQUARED)}, clip=100.0, lam=(100.0,),
                      bn_updates=2),
        # epoch 0 warm-up, 1 student, 2 filter with the distillation term, 3 student
        "rid": Method("rid", _S_RID_OPTIM, clip=100.0, lam=(1.0, 10.0),
                      rid=dict(_CODE_RID, cycles=2, q=2, r=0.5)),
        "ted": Method("rid", _S_RID_OPTIM, clip=100.0, lam=(1.0, 10.0),
                      rid=dict(_CODE_RID, cycles=1, q=4, r=0.25)),
        # epoch 0 the RDMs (3 of them, small), epochs 1..3 the student
        "cifd": _cifd(replace(_SGD, schedule=_S_SQUARED), 100.0, rates=(1.0, 8.0, 64.0), hidden=32, d_ib=16,
                      stage1_epochs=1),
    },
    batch_size=64,
    eval_batch_size=100,
    train_per_class=20,
    test_per_class=10,
    pid_epochs=(2, 4),
    notes="Tiny networks and data for tests; paper-code structure.",
)

PROTOCOLS = {p.name: p for p in (PAPER_CODE, PAPER_TEXT, CPU_PREVIEW, CPU_4K, PAPER_CODE_4K,
                                  PAPER_CODE_4K_TORCH_INIT, CPU_4K_DECAY, SMOKE)}


def get_protocol(name):
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


# ----------------------------------------------------------------------------- a protocol's data

def protocol_data(protocol, ds):
    if protocol.train_per_class is None and protocol.test_per_class is None:
        return ds
    return ds.subset(protocol.train_per_class, protocol.test_per_class, seed=protocol.subset_seed)


def teacher_data(protocol, ds):
    """The teacher's data: the students' subset, or (teacher_data="all") the whole training split with the
    students' test subset."""
    if protocol.teacher_data == "students":
        return protocol_data(protocol, ds)
    if protocol.teacher_data != "all":
        raise ValueError(f"teacher_data must be 'students' or 'all', got {protocol.teacher_data!r}")
    return ds if protocol.test_per_class is None else ds.subset(None, protocol.test_per_class, seed=protocol.subset_seed)
