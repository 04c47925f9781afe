"""Datasets: splits, normalization, and real MNIST through torchvision."""
import pytest
import torch

from harness.data import DATASETS, DataMissing, load
from harness.data.base import stratified_split


def test_stratified_split_is_seeded_disjoint_exact_and_proportional():
    y = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    rest, held = stratified_split(y, 100, seed=3)
    assert len(held) == 100 and len(rest) == 900
    assert not set(rest.tolist()) & set(held.tolist())
    assert torch.bincount(y[held]).tolist() == [60, 30, 10]
    again, held2 = stratified_split(y, 100, seed=3)
    assert torch.equal(held, held2)
    assert not torch.equal(held, stratified_split(y, 100, seed=4)[1])


def test_digits_are_scikit_learns_load_digits():
    # read from the file load_digits reads, without importing scikit-learn (see _digits_file)
    from sklearn.datasets import load_digits

    from harness.data.datasets import _digits_file

    pixels, target = _digits_file()
    bunch = load_digits()
    assert pixels.shape == (1797, 64)
    assert (pixels == bunch.data).all() and (target == bunch.target).all()


def test_digits_splits_are_normalized_on_train_and_test_is_fixed():
    a = DATASETS.build(DATASETS.resolve({"name": "digits", "val_size": 300}, "d"))
    b = DATASETS.build(DATASETS.resolve({"name": "digits", "val_size": 300, "split_seed": 1}, "d"))
    assert a.in_shape == (1, 8, 8) and a.num_classes == 10
    assert (len(a.train[1]), len(a.val[1]), len(a.test[1])) == (1138, 300, 359)
    assert a.train[0].dtype == torch.uint8  # stored as pixels, normalized per batch
    x = a.inputs("train")
    assert x.mean().abs() < 1e-5 and (x.std() - 1).abs() < 1e-3
    # A different split seed moves samples between train and val, never the test set.
    assert torch.equal(a.test[1], b.test[1]) and not torch.equal(a.val[1], b.val[1])
    assert a.meta["n_train"] == 1138 and len(a.meta["mean"]) == 1


def test_train_subset_is_a_stratified_slice():
    d = DATASETS.build(DATASETS.resolve({"name": "digits", "train_subset": 200}, "d"))
    assert len(d.train[1]) == 200
    assert torch.bincount(d.train[1]).min() >= 18


def test_mnist_loads_the_real_files_through_torchvision(mnist_root):
    d = load(DATASETS.resolve({"name": "mnist", "val_size": 5000, "root": str(mnist_root)}, "d"))
    assert (len(d.train[1]), len(d.val[1]), len(d.test[1])) == (55000, 5000, 10000)
    assert d.in_shape == (1, 28, 28)
    assert torch.bincount(d.test[1]).tolist()[:3] == [980, 1135, 1032]  # the real MNIST test set
    assert d.meta["mean"][0] == pytest.approx(0.1307, abs=0.002)  # the well-known MNIST mean


def test_missing_mnist_says_which_file_where_and_how_to_fix_it(tmp_path):
    with pytest.raises(DataMissing) as e:
        DATASETS.build(DATASETS.resolve({"name": "mnist", "root": str(tmp_path)}, "d"))
    message = str(e.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert "HARNESS_DATA_ROOT" in message and "download" in message


def test_data_root_comes_from_the_environment_when_the_suite_has_none(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path / "from-env"))
    with pytest.raises(DataMissing, match="from-env"):
        DATASETS.build(DATASETS.resolve("mnist", "d"))


def _correlated(n=3000, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g)
    return (torch.randn(n, d, generator=g) @ mix + 3).view(n, 1, 3, 4)


def test_preprocessing_is_fitted_on_train_and_does_what_it_says():
    from harness.data.base import fit_preprocess

    train = _correlated()
    flat = lambda t: t.reshape(len(t), -1)  # noqa: E731
    # raw values with a scale, as uint8 pixels are stored: the normalizer divides by it first
    assert torch.allclose(fit_preprocess(train * 255, "standardize", 0.1, 255.0)(train * 255),
                          fit_preprocess(train, "standardize", 0.1)(train), atol=1e-4)
    for kind in ("zca", "pca_whiten"):
        out = flat(fit_preprocess(train, kind, 1e-6)(train))
        assert torch.allclose(torch.cov(out.T), torch.eye(12), atol=1e-3), kind  # whitened
    zca = flat(fit_preprocess(train, "zca", 1e-6)(train))
    pca = flat(fit_preprocess(train, "pca_whiten", 1e-6)(train))
    centred = flat(train) - flat(train).mean(0)
    # ZCA is the whitening closest to the input (Bell & Sejnowski 1997): it stays in pixel space
    assert (zca * centred).sum() > (pca * centred).sum()
    mean_image = fit_preprocess(train, "mean_image", 0.1)(train)
    assert mean_image.mean(0).abs().max() < 1e-4
    minmax = fit_preprocess(train, "minmax", 0.1)(train)
    assert minmax.min().item() == pytest.approx(0.0, abs=1e-6) and minmax.max().item() == pytest.approx(1.0)
    shifted = train[:100] + 5  # val/test use the train statistics, not their own
    assert fit_preprocess(train, "mean_image", 0.1)(shifted).mean().item() == pytest.approx(5, abs=0.3)


def test_digits_with_zca_trains():
    d = DATASETS.build(DATASETS.resolve({"name": "digits", "preprocess": "zca"}, "d"))
    assert d.meta["preprocess"] == "zca" and d.inputs("train").shape[1:] == (1, 8, 8)
    assert torch.isfinite(d.inputs("test")).all()


# --- torchvision datasets from files in their exact formats (tests/fakedata.py) --------------

from tests import fakedata  # noqa: E402


def _build(config):
    return DATASETS.build(DATASETS.resolve(config, "dataset"))


def test_cifar10_loads_through_torchvision_as_uint8_images_in_order(tmp_path):
    written = fakedata.write_cifar10(tmp_path, per_batch=20, n_test=30)
    d = _build({"name": "cifar10", "root": str(tmp_path), "val_size": 10, "checksum": False})
    assert (len(d.train[1]), len(d.val[1]), len(d.test[1])) == (90, 10, 30)
    assert d.train[0].dtype == torch.uint8 and d.in_shape == (3, 32, 32)
    # the test set keeps its order, and each image its R, G, B planes
    expected = torch.as_tensor(written["test_batch"]).view(30, 3, 32, 32)
    assert torch.equal(d.test[0], expected)
    assert d.meta["classes"][:2] == ["airplane", "automobile"] and d.num_classes == 10
    assert d.meta["mean"] == pytest.approx([0.5] * 3, abs=0.02)  # uniform random pixels, computed on train


def test_cifar100_reads_fine_labels(tmp_path):
    fakedata.write_cifar100(tmp_path, n_train=300, n_test=50)
    d = _build({"name": "cifar100", "root": str(tmp_path), "val_size": 100, "checksum": False})
    assert d.num_classes == 100 and d.meta["classes"][99] == "class99"
    assert len(d.train[1]) == 200 and int(d.test[1].max()) < 100


def test_cifar_checksums_and_missing_files_give_one_clear_error(tmp_path):
    fakedata.write_cifar10(tmp_path, per_batch=10, n_test=10)
    with pytest.raises(DataMissing, match=r"data_batch_1 fails its md5 checksum.*checksum: false"):
        _build({"name": "cifar10", "root": str(tmp_path), "val_size": 5})
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataMissing) as e:
        _build({"name": "cifar10", "root": str(tmp_path), "val_size": 5, "checksum": False})
    message = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_3") in message
    assert "dataset cifar10" in message and "HARNESS_DATA_ROOT" in message and "download" in message


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    written = fakedata.write_svhn(tmp_path / "SVHN", n_train=60, n_test=20)
    d = _build({"name": "svhn", "root": str(tmp_path), "val_size": 10, "checksum": False})
    x, y = written["test"]
    assert torch.equal(d.test[0], torch.as_tensor(x))
    expected = torch.as_tensor(y[:, 0].astype("int64")) % 10
    assert torch.equal(d.test[1], expected) and 0 in d.test[1].tolist()
    # torchvision's own layout, files straight in the root, is found as well
    fakedata.write_svhn(tmp_path / "flat", n_train=60, n_test=20)
    assert len(_build({"name": "svhn", "root": str(tmp_path / "flat"), "val_size": 10, "checksum": False}).test[1]) == 20


@pytest.mark.parametrize("name, folder", [("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_idx_datasets_unpack_gz_and_load_through_torchvision(tmp_path, name, folder):
    written = fakedata.write_idx(tmp_path / folder / "raw", n_train=100, n_test=40)
    d = _build({"name": name, "root": str(tmp_path), "val_size": 20})
    assert (len(d.train[1]), len(d.val[1]), len(d.test[1])) == (80, 20, 40)
    assert torch.equal(d.test[0][:, 0], torch.as_tensor(written["t10k"][0]))
    assert len(d.meta["classes"]) == 10 and d.meta["classes"][0] != "0"  # the dataset's own class names


def test_mnist1d_is_generated_offline_deterministically_and_leaves_global_rng_alone():
    import numpy as np

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    d = _build({"name": "mnist1d"})
    assert np.array_equal(np.random.get_state()[1], before)
    assert d.in_shape == (1, 40) and d.train[0].dtype == torch.float32
    assert (len(d.train[1]), len(d.val[1]), len(d.test[1])) == (3500, 500, 1000)
    again = _build({"name": "mnist1d"})
    assert torch.equal(d.train[0], again.train[0]) and torch.equal(d.test[1], again.test[1])
    assert d.meta["generator_args"] == {"num_samples": 5000, "seed": 42}


def test_metadata_and_pipeline_are_recorded_in_the_record(tmp_path):
    from harness.engine import run_trial
    from harness.spec import COMPLETED, TrialSpec
    from harness.suite import resolve_trial

    fakedata.write_cifar10(tmp_path, per_batch=40, n_test=40)
    raw = {
        "dataset": {"name": "cifar10", "root": str(tmp_path), "val_size": 40, "checksum": False},
        "model": {"name": "mlp", "depth": 1, "width": 16}, "optimizer": {"name": "sgd", "lr": 0.01},
        "budget": {"epochs": 1}, "batch_size": 32,
        "regularizers": [{"name": "augment", "crop_padding": 4, "flip": True}, {"name": "cutout", "size": 16}],
    }
    record = run_trial(TrialSpec.make("cifar", resolve_trial(raw, "base"), 0))
    assert record.status == COMPLETED, record.reason
    meta = record.dataset
    assert meta["name"] == "cifar10" and meta["shape"] == [3, 32, 32] and meta["storage"] == "uint8"
    assert meta["n_train"] == 160 and len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert meta["pipeline"] == "device" and meta["stored_mib"] > 0


@pytest.mark.parametrize("preprocess", ["standardize", "minmax", "pca_whiten"])
def test_normalizing_a_float_split_leaves_the_stored_data_as_it_was(preprocess):
    """x.float() of float32 data is the data itself: the normalizer's in-place passes once rewrote the cached
    MNIST-1D split, so that every later trial of a process trained on inputs normalized once more."""
    from harness.data import load
    from harness.suite import resolve_trial

    data = load(resolve_trial({"dataset": {"name": "mnist1d", "preprocess": preprocess}}, "t")["dataset"])
    stored = data.train[0].clone()
    first = data.inputs("train")
    again = data.inputs("train")
    assert torch.equal(data.train[0], stored) and torch.equal(first, again)


def test_a_trial_on_float_data_gives_the_same_record_after_another_trial_in_the_same_process():
    """The pool's workers run trial after trial: the second must not see data the first changed."""
    from harness.engine import run_trial
    from harness.spec import TrialSpec
    from harness.suite import resolve_trial

    def spec(lr: float) -> TrialSpec:
        config = resolve_trial({"dataset": {"name": "mnist1d", "num_samples": 1000, "val_size": 100},
                                "model": {"name": "mlp", "depth": 1, "width": 32}, "optimizer": {"name": "sgd", "lr": lr},
                                "budget": {"epochs": 2}, "diagnostics": {"layers": False}}, "t")
        return TrialSpec.make("t", config, 0)

    alone = run_trial(spec(0.1)).final
    run_trial(spec(0.05))
    after = run_trial(spec(0.1)).final
    assert after["val_loss"] == alone["val_loss"] and after["train_loss"] == alone["train_loss"]
