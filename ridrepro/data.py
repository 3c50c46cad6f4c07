"""CIFAR-10 as uint8 tensors: load, validate, cache, subset, augment, normalise.

Two source formats give the same tensors (up to the JPEG round trip of the re-encoded copy):

* the official python-pickle batches (a ``cifar-10-batches-py`` folder or ``cifar-10-python.tar.gz``,
  downloadable with torchvision's checksummed utilities where a network exists);
* an image-folder layout ``<root>/{train,test}/<class>/NNNN.<jpg|png>``, as a folder or a tar(.gz)
  archive, such as ``../shared/data/cifar10-jpeg.tar.gz``.

Images are ordered class by class, and within a class in their original order (the image-folder
layout cannot recover the official interleaving, so the pickle batches are sorted the same way).
Decoding happens once; the tensors are cached under a key made of the source's sha256.
"""

import hashlib
import io
import json
import os
import pickle
import re
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ridrepro.argtypes import POSITIVE
from ridrepro.files import UserError, atomic_torch_save, file_sha256

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
PAPER_CODE_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the authors' Normalize(0.5, 0.5)
OFFICIAL_PER_CLASS = (5000, 1000)  # (train, test) images per class

PICKLE_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PICKLE_TEST = ("test_batch",)
PICKLE_FOLDER = "cifar-10-batches-py"
PICKLE_ARCHIVE = "cifar-10-python.tar.gz"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CACHE_FORMAT = 1  # bump when the cached layout or the decoding changes


@dataclass(frozen=True)
class CIFAR10:
    """The dataset as tensors: x uint8 (N, 3, 32, 32), y int64 (N,), both on the CPU."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple = CIFAR10_CLASSES
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (3, 32, 32):
                raise ValueError(f"{split}_x must be uint8 (N, 3, 32, 32), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"{split}_y must be int64 of length {len(x)}, got {y.dtype} {tuple(y.shape)}")
            if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
                raise ValueError(f"{split}_y has labels outside 0..{len(self.classes) - 1}")

    def subset(self, train_per_class=None, test_per_class=None, seed=0):
        """A seeded class-balanced subset; None keeps a split whole."""
        parts, record = {}, {}
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if per_class is not None:
                idx = balanced_subset(y, per_class, seed)
                x, y = x[idx], y[idx]
            parts[f"{split}_x"], parts[f"{split}_y"] = x, y
            record[f"{split}_per_class"] = per_class
        provenance = dict(self.provenance, subset=dict(record, seed=seed))
        return replace(self, **parts, provenance=provenance)

    def counts(self, split):
        y = getattr(self, f"{split}_y")
        return torch.bincount(y, minlength=len(self.classes)).tolist()


def balanced_subset(labels, per_class, seed):
    """Sorted indices of `per_class` items of every class, drawn without replacement with `seed`."""
    labels = torch.as_tensor(labels)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} items, fewer than the {per_class} asked for")
        chosen.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values


def random_crop_flip(x, padding=4, generator=None):
    """Random crop after zero padding plus random horizontal flip, for a whole batch at once.

    One gather for the batch instead of a per-image transform: this runs on whatever device x is on,
    so augmentation never leaves the GPU.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    gen_device = generator.device if generator is not None else x.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=gen_device).to(x.device)
    flip = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(x.device)
    padded = F.pad(x, (padding,) * 4)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def norm_tensors(norm, device):
    """(mean, std) as (1, C, 1, 1) float32 tensors on `device`; tensors already there are returned as they are.

    Built once per loop: made from tuples on every call, they would cost a blocking host-to-device copy per
    batch on CUDA.
    """
    return tuple(torch.as_tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1) for v in norm)


def normalize(x, mean, std):
    """uint8 images -> float32 (x/255 - mean) / std per channel, on x's device; mean and std are sequences
    or the tensors of norm_tensors."""
    mean, std = norm_tensors((mean, std), x.device)
    return (x.float() / 255 - mean) / std


# ----------------------------------------------------------------------------- loading

def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("RIDREPRO_CACHE") or os.path.join(base, "ridrepro"))


def data_location(path=None):
    """The data path: the argument, else $RIDREPRO_DATA."""
    path = path or os.environ.get("RIDREPRO_DATA")
    if not path:
        raise ValueError("no CIFAR-10 location: pass a path (--data) or set RIDREPRO_DATA")
    return Path(path).expanduser()


def load_cifar10(path=None, *, cache_dir=None, download=False, expected_per_class=OFFICIAL_PER_CLASS,
                 verbose=False):
    """Load CIFAR-10 from `path` (or $RIDREPRO_DATA), decoding once and caching the tensors.

    `expected_per_class` = (train, test) images per class that the source must hold (None: any, but
    every class present and equal counts within a split are still required).
    """
    kind, source = _find_source(data_location(path), download)
    digest = file_sha256(source)
    cache = Path(cache_dir or default_cache_dir()) / f"cifar10-{digest[:20]}-v{CACHE_FORMAT}.pt"
    if cache.exists():
        try:
            saved = torch.load(cache, weights_only=True)
        except Exception as err:  # a damaged cache is rebuilt, loudly, rather than trusted
            print(f"ridrepro.data: cache {cache} unreadable ({err}); decoding again")
        else:
            ds = CIFAR10(**saved["tensors"], provenance=json.loads(saved["provenance"]))
            _check_counts(ds, expected_per_class, source)
            return ds
    start = time.perf_counter()
    reader = _read_pickle if kind.startswith("pickle") else _read_image_folder
    tensors, details = reader(source)
    provenance = dict(kind=kind, path=str(source.resolve()), sha256=digest, cache_format=CACHE_FORMAT,
                      torch=torch.__version__, order="class-major, original order within a class",
                      **details)
    ds = CIFAR10(**tensors, provenance=provenance)
    _check_counts(ds, expected_per_class, source)
    if verbose:
        print(f"decoded {source} in {time.perf_counter() - start:.1f} s; caching to {cache}")
    try:
        atomic_torch_save({"tensors": tensors, "provenance": json.dumps(provenance)}, cache)
    except (OSError, UserError) as err:  # an unwritable cache costs the next load a decode, nothing more
        print(f"warning: ridrepro.data: cannot cache the decoded tensors ({err}); going on uncached "
              "(set RIDREPRO_CACHE to a writable folder to decode once)", file=sys.stderr)
    return ds


def _find_source(path, download):
    """Decide which format `path` holds; returns (kind, path)."""
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(f"{path} is not a tar archive (expected a CIFAR-10 .tar.gz or a folder)")
        with _open_tar(path) as tar:
            first = next((m.name for m in tar if m.isfile()), "")
        kind = "pickle-archive" if "cifar-10-batches-py/" in first else "image-archive"
        return kind, path
    if path.is_dir():
        for kind, candidate, test in (
            ("pickle-folder", path / PICKLE_FOLDER, Path.is_dir),
            ("pickle-folder", path, lambda p: (p / "data_batch_1").exists()),
            ("pickle-archive", path / PICKLE_ARCHIVE, Path.is_file),
            ("image-folder", path, lambda p: (p / "train").is_dir() or (p / "test").is_dir()),
            ("image-archive", path / "cifar10-jpeg.tar.gz", Path.is_file),
        ):
            if test(candidate):
                return kind, candidate
        if download:
            from torchvision.datasets import CIFAR10 as Official
            from torchvision.datasets.utils import download_and_extract_archive

            # torchvision verifies the archive's md5 before extracting it.
            download_and_extract_archive(Official.url, str(path), filename=PICKLE_ARCHIVE, md5=Official.tgz_md5)
            return "pickle-folder", path / PICKLE_FOLDER
    raise FileNotFoundError(
        f"no CIFAR-10 found at {path}: expected {PICKLE_FOLDER}/, {PICKLE_ARCHIVE}, an image folder with "
        "train/ and test/, or cifar10-jpeg.tar.gz (or pass download=True where a network exists)")


def _open_tar(path):
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"archive {path} is corrupt or truncated: {err}") from err


def _tar_files(path):
    """Yield (member name, bytes) for every file of a tar archive, turning damage into ValueError."""
    with _open_tar(path) as tar:
        try:
            for member in tar:
                if member.isfile():
                    yield member.name, tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            raise ValueError(f"archive {path} is corrupt or truncated: {err}") from err


def _folder_files(path):
    for file in sorted(path.rglob("*")):
        if file.is_file():
            yield str(file.relative_to(path.parent)), file.read_bytes()


def _read_pickle(source):
    files = _tar_files(source) if source.is_file() else _folder_files(source)
    found = {Path(name).name: blob for name, blob in files
             if Path(name).name in PICKLE_TRAIN + PICKLE_TEST + ("batches.meta",)}
    missing = [n for n in PICKLE_TRAIN + PICKLE_TEST if n not in found]
    if missing:
        raise FileNotFoundError(f"{source} lacks the batch file(s) {', '.join(missing)}")
    if "batches.meta" in found:
        names = tuple(n.decode() for n in _unpickle("batches.meta", found["batches.meta"])[b"label_names"])
        if names != CIFAR10_CLASSES:
            raise ValueError(f"{source}: batches.meta lists classes {names}, expected {CIFAR10_CLASSES}")
    from torchvision.datasets import CIFAR10 as Official

    official_md5 = dict(Official.train_list + Official.test_list)
    md5_match = all(hashlib.md5(found[n]).hexdigest() == official_md5[n] for n in PICKLE_TRAIN + PICKLE_TEST)
    tensors = {}
    for split, names in (("train", PICKLE_TRAIN), ("test", PICKLE_TEST)):
        xs, ys = [], []
        for name in names:
            batch = _unpickle(name, found[name])
            data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(f"{name}: data must be uint8 rows of 3072 pixels (32x32x3), "
                                 f"got {data.dtype} {data.shape}")
            if len(labels) != len(data):
                raise ValueError(f"{name}: {len(labels)} labels for {len(data)} images")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels.astype(np.int64))
        x, y = np.concatenate(xs), np.concatenate(ys)
        order = np.argsort(y, kind="stable")
        tensors[f"{split}_x"] = torch.from_numpy(np.ascontiguousarray(x[order]))
        tensors[f"{split}_y"] = torch.from_numpy(y[order])
    return tensors, dict(decoder="python pickle (lossless)", official_md5_match=md5_match)


def _unpickle(name, blob):
    try:
        return pickle.loads(blob, encoding="bytes")
    except Exception as err:
        raise ValueError(f"batch file {name} is corrupt or truncated: {err}") from err


_IMAGE_PATH = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)$")


def _read_image_folder(source):
    from PIL import Image  # torchvision's own decoders are deprecated since 0.29; PIL is the stable choice

    files = _tar_files(source) if source.is_file() else _folder_files(source)
    groups = {}
    for name, blob in files:
        match = _IMAGE_PATH.search(name)
        if not match or not name.lower().endswith(IMAGE_EXTENSIONS):
            continue  # READMEs and other non-image files are not part of the data
        split, cls, stem = match.group(1), match.group(2), Path(match.group(3)).stem
        if cls not in CIFAR10_CLASSES:
            raise ValueError(f"{source}: unknown class folder {split}/{cls} (expected {CIFAR10_CLASSES})")
        groups.setdefault((split, cls), []).append((stem, name, blob))
    tensors = {}
    for split in ("train", "test"):
        missing = [c for c in CIFAR10_CLASSES if (split, c) not in groups]
        if missing:
            raise FileNotFoundError(f"{source}: {split}/ is missing the class folder(s) {', '.join(missing)}")
        xs, ys = [], []
        for label, cls in enumerate(CIFAR10_CLASSES):
            items = sorted(groups[(split, cls)], key=lambda item: _numeric_stem(item))
            stems = [stem for stem, _, _ in items]
            if all(s.isdigit() for s in stems) and [int(s) for s in stems] != list(range(len(stems))):
                gaps = sorted(set(range(len(stems) + 1)) - {int(s) for s in stems})[:5]
                raise FileNotFoundError(f"{source}: {split}/{cls} numbering has gaps (missing e.g. {gaps})")
            for _, name, blob in items:
                try:
                    image = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
                except (OSError, ValueError) as err:
                    raise ValueError(f"{name}: cannot decode image ({err})") from err
                if image.shape != (32, 32, 3):
                    raise ValueError(f"{name}: wrong image size {image.shape[:2]}, expected (32, 32)")
                xs.append(image.transpose(2, 0, 1))
            ys.extend([label] * len(items))
        tensors[f"{split}_x"] = torch.from_numpy(np.stack(xs))
        tensors[f"{split}_y"] = torch.tensor(ys, dtype=torch.int64)
    import PIL

    return tensors, dict(decoder=f"PIL {PIL.__version__} convert('RGB')")


def _numeric_stem(item):
    stem = item[0]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _check_counts(ds, expected_per_class, source):
    for split, expected in zip(("train", "test"), expected_per_class or (None, None)):
        counts = ds.counts(split)
        want = expected if expected is not None else counts[0]
        wrong = {c: n for c, n in zip(ds.classes, counts) if n != want}
        if wrong:
            raise ValueError(f"{source}: {split} split has per-class counts {wrong}, expected {want} each")


def synthetic_cifar(train_per_class=60, test_per_class=20, seed=0):
    """Random images with a learnable class signal (a coloured corner patch); clearly labelled in provenance."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for n in (train_per_class, test_per_class):
        y = torch.arange(10).repeat_interleave(n)
        x = (torch.rand(len(y), 3, 32, 32, generator=g) * 255).to(torch.uint8)
        x[:, :, :8, :8] = (y * 25).to(torch.uint8)[:, None, None, None]
        parts += [x, y]
    return CIFAR10(*parts, provenance={"kind": "synthetic", "seed": seed,
                                       "per_class": [train_per_class, test_per_class]})


@dataclass
class DeviceData:
    train_x: torch.Tensor  # uint8 (N, 3, 32, 32) on the device
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def to_device(ds, device):
    return DeviceData(*(t.to(device) for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y)))


# ----------------------------------------------------------------------------- command line

def add_commands(sub):
    p = sub.add_parser("data", help="load CIFAR-10 (decode once, cache) and print what was loaded")
    p.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    p.add_argument("--cache-dir", help="tensor cache folder (default: $RIDREPRO_CACHE or ~/.cache/ridrepro)")
    p.add_argument("--download", action="store_true", help="download the official archive if none is found")
    p.add_argument("--per-class", nargs=2, type=POSITIVE, metavar=("TRAIN", "TEST"), default=OFFICIAL_PER_CLASS,
                   help="images per class the source must hold (default: the official 5000 1000)")
    p.set_defaults(func=_cmd_data)


def _cmd_data(args):
    start = time.perf_counter()
    ds = load_cifar10(args.data, cache_dir=args.cache_dir, download=args.download,
                      expected_per_class=tuple(args.per_class), verbose=True)
    print(f"loaded in {time.perf_counter() - start:.2f} s")
    for split in ("train", "test"):
        print(f"{split}: {len(getattr(ds, split + '_y'))} images, per class {ds.counts(split)}")
    print(json.dumps(ds.provenance, indent=2))
    return 0
