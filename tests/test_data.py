"""CIFAR-10 data layer: both source formats, every corrupt case, the cache, subsets, augmentation."""

import hashlib
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ridrepro import data
from ridrepro.data import CIFAR10, CIFAR10_CLASSES, load_cifar10

PER_CLASS = (3, 2)  # tiny archives: 3 train and 2 test images per class


def make_images(seed=0):
    """Random images in the official interleaved order, as (split -> (uint8 N x 3072, labels))."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, per_class in zip(("train", "test"), PER_CLASS):
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        out[split] = (rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), labels)
    return out


def write_pickle_folder(root, images, drop=(), labels_short=()):
    folder = root / data.PICKLE_FOLDER
    folder.mkdir(parents=True)
    x, y = images["train"]
    batches = dict(zip(data.PICKLE_TRAIN, zip(np.array_split(x, 5), np.array_split(y, 5))))
    batches["test_batch"] = images["test"]
    for name, (bx, by) in batches.items():
        if name in drop:
            continue
        labels = list(by[:-1] if name in labels_short else by)
        (folder / name).write_bytes(pickle.dumps({b"data": bx, b"labels": labels}))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


def write_image_folder(root, images, ext="png", size=32, skip=None):
    """Lossless PNGs, so both formats must decode to identical tensors."""
    root = root / "cifar10-img"
    for split, (x, y) in images.items():
        counters = {}
        for row, label in zip(x, y):
            cls = CIFAR10_CLASSES[label]
            n = counters.get(cls, 0)
            counters[cls] = n + 1
            if skip and skip == (split, cls, n):
                continue
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0))
            if size != 32 and (split, cls, n) == ("train", "cat", 0):
                image = image.resize((size, size))
            image.save(folder / f"{n:04d}.{ext}")
    return root


def tar_gz(folder, out):
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


def expected_tensors(images):
    """Class-major order with the original order kept within each class."""
    out = {}
    for split, (x, y) in images.items():
        order = np.argsort(y, kind="stable")
        out[split] = (torch.from_numpy(x[order].reshape(-1, 3, 32, 32)), torch.from_numpy(y[order]))
    return out


def load(path, tmp_path, **kw):
    return load_cifar10(path, cache_dir=tmp_path / "cache", expected_per_class=PER_CLASS, **kw)


@pytest.fixture
def images():
    return make_images()


@pytest.mark.parametrize("fmt", ["pickle-folder", "pickle-archive", "image-folder", "image-archive"])
def test_every_format_gives_the_same_tensors(fmt, images, tmp_path):
    if fmt.startswith("pickle"):
        source = write_pickle_folder(tmp_path / "src", images)
    else:
        source = write_image_folder(tmp_path / "src", images)
    if fmt.endswith("archive"):
        source = tar_gz(source, tmp_path / "data.tar.gz")
    ds = load(source, tmp_path)
    assert ds.provenance["kind"] == fmt
    for split, (x, y) in expected_tensors(images).items():
        assert torch.equal(getattr(ds, split + "_x"), x)
        assert torch.equal(getattr(ds, split + "_y"), y)


def test_folder_holding_the_pickle_folder_is_found(images, tmp_path):
    write_pickle_folder(tmp_path, images)
    assert load(tmp_path, tmp_path).provenance["kind"] == "pickle-folder"


def test_path_from_environment(images, tmp_path, monkeypatch):
    write_pickle_folder(tmp_path, images)
    monkeypatch.setenv("RIDREPRO_DATA", str(tmp_path))
    assert len(load(None, tmp_path).train_y) == 30
    monkeypatch.delenv("RIDREPRO_DATA")
    with pytest.raises(ValueError, match="RIDREPRO_DATA"):
        load(None, tmp_path)


def test_second_load_comes_from_the_cache(images, tmp_path, monkeypatch):
    source = tar_gz(write_image_folder(tmp_path / "src", images), tmp_path / "a.tar.gz")
    first = load(source, tmp_path)

    def no_decoding(_):
        raise AssertionError("decoded again despite a cache")

    monkeypatch.setattr(data, "_read_image_folder", no_decoding)
    second = load(source, tmp_path)
    assert torch.equal(first.train_x, second.train_x) and first.provenance == second.provenance


def test_cache_is_keyed_by_content(images, tmp_path):
    source = write_pickle_folder(tmp_path / "src", images)
    before = load(source, tmp_path)
    changed = make_images(seed=1)
    (source / "test_batch").write_bytes(pickle.dumps({b"data": changed["test"][0],
                                                      b"labels": list(changed["test"][1])}))
    after = load(source, tmp_path)
    assert before.provenance["sha256"] != after.provenance["sha256"]
    assert not torch.equal(before.test_x, after.test_x)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_damaged_cache_is_rebuilt(images, tmp_path, capsys):
    source = write_pickle_folder(tmp_path / "src", images)
    good = load(source, tmp_path)
    (cache,) = (tmp_path / "cache").glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:100])
    again = load(source, tmp_path)
    assert "unreadable" in capsys.readouterr().out
    assert torch.equal(good.train_x, again.train_x)


# ----------------------------------------------------------------------------- bad data

def test_missing_location(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 found"):
        load(tmp_path, tmp_path)


def test_missing_batch_file(images, tmp_path):
    source = write_pickle_folder(tmp_path, images, drop=("data_batch_3",))
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load(source, tmp_path)


def test_label_count_mismatch_in_batch(images, tmp_path):
    source = write_pickle_folder(tmp_path, images, labels_short=("data_batch_2",))
    with pytest.raises(ValueError, match="data_batch_2: 5 labels for 6 images"):
        load(source, tmp_path)


def test_corrupt_batch_file(images, tmp_path):
    source = write_pickle_folder(tmp_path, images)
    blob = (source / "test_batch").read_bytes()
    (source / "test_batch").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="test_batch is corrupt or truncated"):
        load(source, tmp_path)


@pytest.mark.parametrize("fmt", ["pickle", "image"])
def test_truncated_archive(fmt, images, tmp_path):
    writer = write_pickle_folder if fmt == "pickle" else write_image_folder
    source = tar_gz(writer(tmp_path / "src", images), tmp_path / "a.tar.gz")
    blob = source.read_bytes()
    source.write_bytes(blob[: int(len(blob) * 0.6)])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load(source, tmp_path)


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar file at all" * 100)
    with pytest.raises(ValueError, match="not a tar archive"):
        load(junk, tmp_path)


def test_wrong_image_size(images, tmp_path):
    source = write_image_folder(tmp_path, images, size=31)
    with pytest.raises(ValueError, match=r"train/cat/0000.png: wrong image size \(31, 31\)"):
        load(source, tmp_path)


def test_corrupt_image(images, tmp_path):
    source = write_image_folder(tmp_path, images)
    (source / "test" / "dog" / "0001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="dog/0001.png: cannot decode"):
        load(source, tmp_path)


def test_missing_class_folder(images, tmp_path):
    source = write_image_folder(tmp_path, images)
    for f in (source / "test" / "frog").iterdir():
        f.unlink()
    (source / "test" / "frog").rmdir()
    with pytest.raises(FileNotFoundError, match="test/ is missing the class folder.* frog"):
        load(source, tmp_path)


def test_unknown_class_folder(images, tmp_path):
    source = write_image_folder(tmp_path, images)
    (source / "train" / "cats").mkdir()
    (source / "train" / "cats" / "0000.png").write_bytes((source / "train" / "cat" / "0000.png").read_bytes())
    with pytest.raises(ValueError, match="unknown class folder train/cats"):
        load(source, tmp_path)


def test_missing_image_leaves_a_gap(images, tmp_path):
    source = write_image_folder(tmp_path, images, skip=("train", "ship", 1))
    with pytest.raises(FileNotFoundError, match="train/ship numbering has gaps"):
        load(source, tmp_path)


def test_wrong_per_class_count(images, tmp_path):
    source = write_pickle_folder(tmp_path, images)
    with pytest.raises(ValueError, match="train split has per-class counts .* expected 5000"):
        load_cifar10(source, cache_dir=tmp_path / "cache")  # the official 5000/1000 by default


def test_dataset_rejects_bad_tensors():
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    y = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        CIFAR10(x.float(), y, x, y)
    with pytest.raises(ValueError, match="length 4"):
        CIFAR10(x, y[:3], x, y)
    with pytest.raises(ValueError, match="labels outside"):
        CIFAR10(x, y + 10, x, y)


# ----------------------------------------------------------------------------- subsets and augmentation

def test_balanced_subset_is_seeded_and_balanced():
    labels = torch.arange(10).repeat_interleave(50)
    a = data.balanced_subset(labels, 7, seed=3)
    assert torch.equal(a, data.balanced_subset(labels, 7, seed=3))
    assert not torch.equal(a, data.balanced_subset(labels, 7, seed=4))
    assert torch.bincount(labels[a]).tolist() == [7] * 10
    assert len(set(a.tolist())) == 70 and torch.equal(a, a.sort().values)
    with pytest.raises(ValueError, match="fewer than the 51"):
        data.balanced_subset(labels, 51, seed=0)


def test_dataset_subset_records_provenance(images, tmp_path):
    ds = load(write_pickle_folder(tmp_path, images), tmp_path)
    small = ds.subset(train_per_class=2, seed=5)
    assert small.counts("train") == [2] * 10 and small.counts("test") == [2] * 10
    assert small.provenance["subset"] == {"train_per_class": 2, "test_per_class": None, "seed": 5}


def test_crop_flip_is_a_window_of_the_padded_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = data.random_crop_flip(x, padding=2, generator=gen)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2,) * 4)
    flips = 0
    for i in range(len(x)):
        windows = {(dy, dx, f) for dy in range(5) for dx in range(5) for f in (0, 1)
                   if torch.equal(out[i], (lambda w: w.flip(2) if f else w)(padded[i, :, dy:dy + 8, dx:dx + 8]))}
        assert windows, f"image {i} is not a crop of its padded original"
        flips += all(f for _, _, f in windows)
    assert 10 < flips < 54  # both flipped and unflipped images occur


def test_crop_flip_is_reproducible_with_a_generator():
    x = torch.rand(16, 3, 32, 32)
    a = data.random_crop_flip(x, generator=torch.Generator().manual_seed(1))
    b = data.random_crop_flip(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, x)


def test_normalize():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    out = data.normalize(x, *data.PAPER_CODE_NORM)
    assert out.dtype == torch.float32
    assert torch.equal(out[0, :, 0, 0], torch.full((3,), -1.0)) and torch.equal(out[0, :, 0, 1], torch.ones(3))


# ----------------------------------------------------------------------------- the real archive

REAL = Path(os.environ.get("RIDREPRO_DATA", "/nonexistent"))


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.exists(), reason="RIDREPRO_DATA is unset or missing: the real CIFAR-10 archive "
                    "is not here (.ci/run points it at ../shared/data)")
def test_real_archive():
    ds = load_cifar10(REAL)
    assert ds.counts("train") == [5000] * 10 and ds.counts("test") == [1000] * 10
    assert len(ds.train_x) == 50_000 and len(ds.test_x) == 10_000
    if ds.provenance["sha256"] == "6c9b930289b4e49b2ec38c4eec6d8f11a272ce9d803b1c98018fbcc8682241ce":
        # Pixel checksums of the re-encoded copy, decoded by libjpeg(-turbo) through torchvision.
        assert hashlib.sha256(ds.train_x.numpy().tobytes()).hexdigest().startswith("f12bc101717acd0d")
        assert hashlib.sha256(ds.test_x.numpy().tobytes()).hexdigest().startswith("2fb7dfcd1893f37e")


def test_download_goes_through_torchvision_with_the_official_md5(images, tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, root, filename, md5):  # no network here: unpack a local tiny archive instead
        calls.append((url, filename, md5))
        write_pickle_folder(Path(root), images)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    target = tmp_path / "dl"
    target.mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 found"):
        load(target, tmp_path)
    ds = load(target, tmp_path, download=True)
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a")]
    assert ds.provenance["kind"] == "pickle-folder" and ds.provenance["official_md5_match"] is False


def test_command_line_reports_bad_input_in_one_line(tmp_path, capsys):
    from ridrepro.cli import main

    assert main(["data", "--data", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ridrepro data: error: no CIFAR-10 found") and "Traceback" not in err


def test_command_line_loads_and_prints(images, tmp_path, capsys):
    from ridrepro.cli import main

    source = write_image_folder(tmp_path, images)
    args = ["data", "--data", str(source), "--cache-dir", str(tmp_path / "c"), "--per-class"]
    assert main(args + ["3", "2"]) == 0
    out = capsys.readouterr().out
    assert "train: 30 images, per class [3, 3, 3, 3, 3, 3, 3, 3, 3, 3]" in out and '"kind": "image-folder"' in out
    assert main(args + ["5000", "1000"]) == 2
    assert "expected 5000 each" in capsys.readouterr().err


def test_normalize_takes_ready_tensors():
    x = (torch.rand(2, 3, 4, 4) * 255).to(torch.uint8)
    mean, std = data.norm_tensors(data.PAPER_CODE_NORM, x.device)
    assert mean.shape == std.shape == (1, 3, 1, 1)
    assert data.norm_tensors((mean, std), x.device)[0].data_ptr() == mean.data_ptr()  # no copy
    assert torch.equal(data.normalize(x, mean, std), data.normalize(x, *data.PAPER_CODE_NORM))
