"""Tests of the image loaders (TFDS through a fake tfds, Continual ImageNet class folders) and of
scripts/prepare_continual_imagenet.py, on small data generated here in the same formats."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from plasticity_jax.data import DataSourceError, ImageDataset, load_class_folder, load_tfds_images
from plasticity_jax.data import images as images_mod
from tests.data.test_mnist import _fake_tfds

REPO_ROOT = Path(__file__).resolve().parents[2]
NUM_CLASSES, PER_FILE = 5, 12


def _class_images(num_classes=NUM_CLASSES, n=PER_FILE) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for _ in range(num_classes)]


@pytest.fixture
def folder(tmp_path) -> tuple[Path, list[np.ndarray]]:
    """A class folder of 5 classes with 12 random 32x32x3 images each."""
    arrays = _class_images()
    for c, a in enumerate(arrays):
        np.save(tmp_path / f"{c}.npy", a)
    return tmp_path, arrays


# ------------------------------------------------------------------------------------------------
# TFDS source
# ------------------------------------------------------------------------------------------------


def test_tfds_cifar100_shapes_become_uint8_and_int32(monkeypatch):
    calls = {}

    def fake_load(name, **kwargs):
        calls.update(kwargs, name=name)
        rng = np.random.default_rng(0)
        split = lambda n: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),  # noqa: E731
                           np.arange(n, dtype=np.int64) % 100)
        return [split(50), split(20)]

    _fake_tfds(monkeypatch, fake_load)
    data = load_tfds_images("cifar100", data_dir=Path("/some/tfds_dir"))
    assert isinstance(data, ImageDataset)
    assert calls == dict(name="cifar100", split=["train", "test"], batch_size=-1, as_supervised=True,
                         data_dir="/some/tfds_dir")
    assert data.train_x.shape == (50, 32, 32, 3) and data.test_x.shape == (20, 32, 32, 3)
    assert data.train_x.dtype == data.test_x.dtype == np.uint8
    assert data.train_y.dtype == data.test_y.dtype == np.int32
    assert data.test_y.tolist() == list(range(20))


def test_tfds_without_tensorflow_explains_both_fixes(monkeypatch):
    _fake_tfds(monkeypatch, lambda *args, **kwargs: None)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(DataSourceError) as info:
        load_tfds_images("cifar100")
    message = str(info.value)
    assert "TensorFlow" in message and "pip install 'plasticity_jax[tfds]'" in message
    assert "data_dir" in message and "'cifar100'" in message


def test_tfds_download_failure_is_wrapped(monkeypatch):
    def failing_load(*args, **kwargs):
        raise ConnectionError("no route to host")

    _fake_tfds(monkeypatch, failing_load)
    with pytest.raises(DataSourceError) as info:
        load_tfds_images("cifar10")
    message = str(info.value)
    assert "no route to host" in message and "[tfds]" in message and "data_dir" in message


def test_tfds_non_image_dataset_is_refused(monkeypatch):
    _fake_tfds(monkeypatch, lambda name, **kwargs: [(np.zeros((4, 7)), np.zeros(4))] * 2)
    with pytest.raises(DataSourceError, match=r"train split has images of shape \(4, 7\)"):
        load_tfds_images("some_table")


# ------------------------------------------------------------------------------------------------
# Continual ImageNet class folder
# ------------------------------------------------------------------------------------------------


def test_class_folder_splits_first_images_for_training_next_for_testing(folder):
    root, arrays = folder
    data = load_class_folder(root, train_per_class=8, test_per_class=3)  # the last image of each file is unused
    assert data.train_x.shape == (40, 32, 32, 3) and data.test_x.shape == (15, 32, 32, 3)
    assert data.train_x.dtype == data.test_x.dtype == np.uint8
    assert data.train_y.dtype == data.test_y.dtype == np.int32
    np.testing.assert_array_equal(data.train_y, np.repeat(np.arange(5), 8))
    np.testing.assert_array_equal(data.test_y, np.repeat(np.arange(5), 3))
    for c, a in enumerate(arrays):
        np.testing.assert_array_equal(data.train_x[8 * c:8 * (c + 1)], a[:8])
        np.testing.assert_array_equal(data.test_x[3 * c:3 * (c + 1)], a[8:11])
    assert not isinstance(data.train_x, np.memmap)


def test_class_folder_num_classes_takes_the_first_classes(folder):
    root, arrays = folder
    data = load_class_folder(str(root), train_per_class=10, test_per_class=2, num_classes=2)
    np.testing.assert_array_equal(data.train_y, np.repeat([0, 1], 10))
    np.testing.assert_array_equal(data.test_x[2:], arrays[1][10:])


def test_class_folder_memory_maps_each_file(folder, monkeypatch):
    modes = []
    real_load = np.load
    def spy(*args, **kwargs):
        modes.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(images_mod.np, "load", spy)
    load_class_folder(folder[0], train_per_class=6, test_per_class=6)
    assert modes == ["r"] * NUM_CLASSES


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist") as info:
        load_class_folder(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert "prepare_continual_imagenet.py" in str(info.value)


def test_folder_without_npy_files(tmp_path):
    (tmp_path / "0.npz").write_bytes(b"")
    with pytest.raises(DataSourceError, match="holds no .npy files") as info:
        load_class_folder(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_misnamed_files_are_named(folder):
    root, arrays = folder
    for name in ("mean.npy", "07.npy"):
        np.save(root / name, arrays[0])
    with pytest.raises(DataSourceError) as info:
        load_class_folder(root)
    assert "07.npy, mean.npy" in str(info.value) and "{class_index}.npy" in str(info.value)


def test_missing_class_indices_are_named(folder):
    root, arrays = folder
    (root / "1.npy").unlink()
    for c in (7, 8, 9):
        np.save(root / f"{c}.npy", arrays[0])
    with pytest.raises(DataSourceError, match=r"no file for class indices 1, 5-6: .* 0\.\.9") as info:
        load_class_folder(root, train_per_class=6, test_per_class=6)
    assert str(root) in str(info.value)
    with pytest.raises(DataSourceError, match=r"class indices 1, 5-6, 10-11: .* 0\.\.11"):
        load_class_folder(root, num_classes=12)


@pytest.mark.parametrize("array, expected", [
    (np.zeros((12, 32, 32, 3), np.float32), r"float32 of shape \(12, 32, 32, 3\)"),
    (np.zeros((12, 32, 32), np.uint8), r"uint8 of shape \(12, 32, 32\)"),
    (np.zeros((12, 3, 32, 32), np.uint8), r"\(12, 3, 32, 32\).*channels-first"),
    (np.zeros((10, 32, 32, 3), np.uint8), r"uint8 of shape \(10, 32, 32, 3\); expected .* n >= 11"),
], ids=["dtype", "grayscale", "channels_first", "too_few"])
def test_bad_class_file_is_named_with_shape_and_expectation(folder, array, expected):
    root, _ = folder
    np.save(root / "3.npy", array)
    with pytest.raises(DataSourceError, match=expected) as info:
        load_class_folder(root, train_per_class=8, test_per_class=3)
    message = str(info.value)
    assert str(root / "3.npy") in message and "uint8 of shape (n, 32, 32, 3)" in message


def test_unreadable_class_file_is_named(folder):
    root, _ = folder
    (root / "2.npy").write_bytes(b"not an npy file")
    with pytest.raises(DataSourceError, match="Could not read") as info:
        load_class_folder(root, train_per_class=8, test_per_class=3)
    assert str(root / "2.npy") in str(info.value)


def test_bad_split_sizes_are_refused(folder):
    with pytest.raises(ValueError, match="train_per_class"):
        load_class_folder(folder[0], train_per_class=0)


# ------------------------------------------------------------------------------------------------
# scripts/prepare_continual_imagenet.py
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepare():
    path = REPO_ROOT / "scripts" / "prepare_continual_imagenet.py"
    spec = importlib.util.spec_from_file_location("prepare_continual_imagenet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stream(arrays, order):
    """(image, label) pairs: the next unused image of each class in ``order``, labels as numpy ints like TFDS's."""
    used = [0] * len(arrays)
    for c in order:
        yield arrays[c][used[c]], np.int64(c)
        used[c] += 1


def test_prepare_writes_first_images_of_each_class_in_stream_order(prepare, tmp_path):
    arrays = _class_images(num_classes=3, n=6)
    order = [2, 0, 2, 1, 0, 0, 2, 1, 1, 0, 2, 1, 0, 1, 2]  # every class reaches 4 images; then more
    stream = _stream(arrays, order + [7, 0, 1])  # label 7 is outside the classes and ignored
    written = prepare.write_class_files(stream, tmp_path / "out", num_classes=3, per_class=4)
    assert [p.name for p in written] == ["0.npy", "2.npy", "1.npy"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    data = load_class_folder(tmp_path / "out", train_per_class=3, test_per_class=1)
    for c, a in enumerate(arrays):
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{c}.npy"), a[:4])
        np.testing.assert_array_equal(data.test_x[c], a[3])


def test_prepare_stops_reading_once_every_class_is_complete(prepare, tmp_path):
    arrays = _class_images(num_classes=2, n=3)

    def stream():
        yield from _stream(arrays, [0, 1, 0, 1])
        raise AssertionError("read past the last needed image")

    assert len(prepare.write_class_files(stream(), tmp_path, num_classes=2, per_class=2)) == 2


def test_prepare_skips_existing_files_and_reports_short_classes(prepare, tmp_path):
    arrays = _class_images(num_classes=3, n=4)
    np.save(tmp_path / "1.npy", arrays[1][:2])
    with pytest.raises(DataSourceError, match=r"\(class \(images seen\)\): 2 \(1\)\. "):
        prepare.write_class_files(_stream(arrays, [0, 1, 2, 0, 1]), tmp_path, num_classes=3, per_class=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.npy", "1.npy"]


def test_prepare_refuses_other_image_shapes(prepare, tmp_path):
    with pytest.raises(DataSourceError, match=r"class 0 has shape \(64, 64, 3\)"):
        prepare.write_class_files([(np.zeros((64, 64, 3), np.uint8), 0)], tmp_path, num_classes=1, per_class=1)


def test_prepare_failed_write_leaves_no_file(prepare, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(prepare.np, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        prepare.write_class_files(_stream(_class_images(1, 1), [0]), tmp_path, num_classes=1, per_class=1)
    assert list(tmp_path.iterdir()) == []


def test_prepare_without_tensorflow_explains_both_fixes(prepare, tmp_path, monkeypatch):
    _fake_tfds(monkeypatch, lambda *args, **kwargs: None)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(DataSourceError) as info:
        prepare.main([f"--out_dir={tmp_path}"])
    message = str(info.value)
    assert "pip install 'plasticity_jax[tfds]'" in message and "--tfds_data_dir" in message
    assert "imagenet_resized/32x32" in message
