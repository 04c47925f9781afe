"""The language-model workload: the ``text`` dataset (bytes of a corpus, cut by position) and the
decoder-only ``transformer`` (issue 31)."""
from __future__ import annotations

import hashlib
import math
import sysconfig
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import harness_cli, write_suite

from harness.data.text import VOCAB, bits_per_byte, corpus, text
from harness.errors import ConfigError
from harness.models.gpt import Transformer
from harness.store import scan
from harness.suite import load_suite

LM = """
name: lm
seeds: 1
budget: {epochs: 6}
base:
  dataset: {name: text, context: 32, stride: 32, max_bytes: 100000}
  model: {name: transformer, width: 64, depth: 2, heads: 4}
  optimizer: {name: adamw, lr: 0.003}
  schedule: cosine
  batch_size: 32
  diagnostics: {layers: false}
"""


def test_the_default_corpus_is_the_stdlib_source_cut_by_position_into_shifted_windows():
    splits = text(context=16, stride=8, max_bytes=20_000)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    raw = b"".join(f.read_bytes() for f in files)[:20_000]
    assert splits.meta["sha256"] == hashlib.sha256(raw).hexdigest() and splits.meta["bytes"] == 20_000
    data = torch.tensor(list(raw))
    x, y = splits.train
    assert torch.equal(x[1], data[8:24]) and torch.equal(y[1], data[9:25])  # the target: the next byte
    n_train = 20_000 - 2 * 1000
    vx, _ = splits.val
    assert torch.equal(vx[0], data[n_train:n_train + 16])  # validation starts where training's bytes end
    assert int(x.max()) < VOCAB and splits.num_classes == VOCAB and splits.in_shape == (16,)


def test_a_users_file_is_the_corpus_and_a_file_that_is_not_text_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("hello world " * 500)
    splits = text(path=str(tmp_path / "a.txt"), context=8, stride=8)
    assert splits.meta["files"] == 1 and splits.meta["source"].endswith("a.txt")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe" * 1000)
    with pytest.raises(UnicodeDecodeError):
        corpus(str(tmp_path / "b.txt"), 10_000)


def test_the_transformer_is_causal_and_evaluates_every_block():
    torch.manual_seed(0)
    for pre_ln in (True, False):
        model = Transformer(VOCAB, 16, 32, 2, 4, 0.0, 0.0, pre_ln, True, drop_path=0.5).eval()
        x = torch.randint(0, VOCAB, (2, 16))
        out = model(x)
        assert out.shape == (2, VOCAB, 16)  # cross_entropy's (N, C, positions) layout
        changed = x.clone()
        changed[:, 10:] = (changed[:, 10:] + 1) % VOCAB
        again = model(changed)
        assert torch.allclose(out[..., :10], again[..., :10], atol=1e-6)  # no position sees a later byte
        assert not torch.allclose(out[..., 10:], again[..., 10:])
        assert torch.equal(model(x), out)  # stochastic depth: at eval every block, every time
    assert model.head.weight is model.embed.weight  # tied embeddings


def test_a_transformer_needs_token_data_and_no_other_norm(tmp_path):
    with pytest.raises(ConfigError, match="reads token sequences"):
        load_suite(write_suite(tmp_path, LM.replace("{name: text, context: 32, stride: 32, max_bytes: 100000}",
                                                    "digits")))
    with pytest.raises(ConfigError, match="its own LayerNorms"):
        load_suite(write_suite(tmp_path, LM + "  norm: batchnorm\n"))


@pytest.mark.slow
def test_a_few_hundred_steps_bring_validation_bits_per_byte_well_below_the_corpus_unigram_entropy(tmp_path):
    raw, _ = corpus(None, 100_000)
    train = raw[: len(raw) - 2 * 5000]  # the bytes the model trains on (val and test are 5% each)
    counts = Counter(train)
    unigram = -sum(c / len(train) * math.log2(c / len(train)) for c in counts.values())
    r = harness_cli("run", write_suite(tmp_path, LM), "--results", tmp_path / "r", "--workers", "2", "--no-report")
    assert r.returncode == 0, r.stdout + r.stderr
    (record,) = scan(tmp_path / "r" / "lm").records.values()
    assert record.final["step"] >= 500
    assert record.dataset["unigram_bits_per_byte"] == pytest.approx(unigram)
    assert bits_per_byte(record.final["val_loss"]) < unigram - 1.0, (bits_per_byte(record.final["val_loss"]), unigram)
    assert record.final["val_acc"] > max(counts.values()) / len(train)  # better than always the commonest byte


def test_a_tied_weight_is_one_parameter_of_the_optimizer():
    from harness.engine.build import param_groups

    model = Transformer(VOCAB, 16, 32, 2, 4, 0.0, 0.0, True, True, 0.0)
    listed = [p for g in param_groups(model, decay_biases=True, decay_norm=True) for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed}) == len(list(model.parameters()))
