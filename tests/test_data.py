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


def test_digits_splits_are_normalized_on_train_and_test_is_fixed():
    a = DATASETS.build(DATASETS.resolve({"name": "digits", "val_size": 300}, "d"))
    b = DATASETS.build(DATASETS.resolve({"name": "digits", "val_size": 300, "split_seed": 1}, "d"))
    assert a.in_shape == (1, 8, 8) and a.num_classes == 10
    assert (len(a.train[1]), len(a.val[1]), len(a.test[1])) == (1138, 300, 359)
    assert a.train[0].mean().abs() < 1e-5 and (a.train[0].std() - 1).abs() < 1e-3
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
    assert d.meta["preprocess"] == "zca" and d.train[0].shape[1:] == (1, 8, 8)
    assert torch.isfinite(d.test[0]).all()
