"""Data sets, batches and image input, checked against independent parses of the files."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnlab.data import DataLoader, dataset_info, load_dataset
from cnnlab.data.images import load_image
from cnnlab.errors import DataError


def _parse(path):
    """Independent IDX parse: gzip + struct, nothing from cnnlab."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


@pytest.mark.parametrize(
    "folder", ["mnist_like_dir", pytest.param("mnist_sample_dir", marks=pytest.mark.slow)]
)
def test_mnist_files_match_an_independent_parse(folder, request):
    data_dir = request.getfixturevalue(folder)  # made on the spot, or the real sample
    info = dataset_info("mnist")
    for split, prefix, n in (("train", "train", 6000), ("test", "t10k", 2000)):
        ds = load_dataset("mnist", split, data_dir)
        raw_images = _parse(data_dir / f"{prefix}-images-idx3-ubyte.gz")
        raw_labels = _parse(data_dir / f"{prefix}-labels-idx1-ubyte.gz")
        assert len(ds) == n and ds.images.shape == (n, 1, 28, 28)
        assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int64
        assert np.array_equal(ds.labels, raw_labels)
        pixels = ds.images[:, 0] * info.std + info.mean  # undo the normalisation
        assert np.abs(pixels - raw_images / 255.0).max() < 1e-5
        assert set(np.unique(ds.labels)) == set(range(10))


def test_test_split_reads_only_the_t10k_files(mnist_like_dir, tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((mnist_like_dir / name).read_bytes())
    assert len(load_dataset("mnist", "test", tmp_path)) == 2000
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", "train", tmp_path)


def test_digits_split_is_a_fixed_stratified_partition_of_sklearns_digits():
    from collections import Counter

    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.images.shape[1:] == (1, 8, 8)
    info = dataset_info("digits")

    def rows(d):
        values = np.rint((d.images[:, 0] * info.std + info.mean) * 16).astype(int)
        return Counter(zip(map(tuple, values.reshape(len(d), -1)), d.labels.tolist()))

    bunch = load_digits()
    full = Counter(zip(map(tuple, bunch.data.astype(int)), bunch.target.tolist()))
    assert rows(train) + rows(test) == full  # every sample in exactly one split
    for c in range(10):
        share = (test.labels == c).sum() / ((train.labels == c).sum() + (test.labels == c).sum())
        assert 0.15 < share < 0.25
    assert np.array_equal(load_dataset("digits", "test").labels, test.labels)


def test_missing_folder_and_unknown_names(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no such directory"):
        load_dataset("mnist", "test", tmp_path / "absent")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="cnnlab download mnist"):
        load_dataset("mnist", "test")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("digits", "validation")


def test_loader_order_is_a_function_of_seed_and_epoch():
    ds = load_dataset("digits", "train")
    loader = DataLoader(ds, batch_size=100, seed=4)
    first = np.concatenate([y for _, y in loader.epoch_batches(0)])
    again = np.concatenate([y for _, y in DataLoader(ds, 100, seed=4).epoch_batches(0)])
    other = np.concatenate([y for _, y in loader.epoch_batches(1)])
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(loader) == 15 and len(first) == len(ds)
    order = loader.order(0)
    assert np.array_equal(np.sort(order), np.arange(len(ds)))  # each sample exactly once
    tail = list(loader.epoch_batches(0, start_step=6))
    full = list(loader.epoch_batches(0))[6:]
    assert all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(tail, full)
    )
    assert len(DataLoader(ds, 100, drop_last=True)) == 14
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(ds, batch_size=0)


def test_image_of_any_size_becomes_a_centred_light_on_dark_digit(tmp_path):
    img = Image.new("L", (100, 60), 255)
    ImageDraw.Draw(img).rectangle([10, 10, 30, 50], fill=0)  # dark stroke off-centre
    path = tmp_path / "digit.png"
    img.save(path)
    x = load_image(path, "mnist")
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    info = dataset_info("mnist")
    pixels = x[0, 0] * info.std + info.mean
    assert pixels.max() > 0.9 and pixels[0].max() < 0.05  # inverted, background dark
    rows, cols = np.indices(pixels.shape)
    cy, cx = (rows * pixels).sum() / pixels.sum(), (cols * pixels).sum() / pixels.sum()
    assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5  # centred by mass
    assert load_image(path, "digits").shape == (1, 1, 8, 8)


def test_non_image_files_are_named(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(os.urandom(100))
    with pytest.raises(DataError, match=r"photo\.jpg"):
        load_image(bad, "mnist")


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
def test_full_fashion_mnist_is_found_and_complete():
    assert os.path.isdir(FASHION), "install it: apt-get install -y dataset-fashion-mnist"
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert test.classes[9] == "Ankle boot"
    assert abs(float(train.images.mean())) < 0.01 and abs(float(train.images.std()) - 1) < 0.01
