"""slurm.chunk: auto (harness/launch/chunking.py): small trials share a task, large ones do not, a task
stays within half its time limit, and chunking never leaves the cluster's slots idle (with slots to
spare, one trial a task ends soonest)."""
import math
import textwrap

import pytest
from conftest import write_suite

from harness.launch.chunking import STARTUP_S, auto_chunk, forward_flops, parse_time, seconds_from_budget
from harness.plugins import load_plugins
from harness.spec import COMPLETED, Record
from harness.suite import load_suite

TINY = """
name: tiny
seeds: 16
budget: {epochs: 100}
base:
  dataset: {name: digits, val_size: 300}
  model: {name: mlp, depth: 2, width: 64}
  batch_size: 16
"""
RESNET = """
name: big
seeds: 4
budget: {epochs: 100}
base:
  dataset: {name: cifar10, val_size: 5000}
  model: {name: resnet, depth: 56}
  norm: batchnorm
  batch_size: 128
"""


@pytest.mark.parametrize("text, seconds", [("30", 1800), ("10:00", 600), ("01:00:00", 3600), ("2-12:00:00", 216000),
                                           ("1-0", 86400), ("1-2:30", 95400), ("UNLIMITED", None), (None, None)])
def test_slurm_time_limits_in_seconds(text, seconds):
    assert parse_time(text) == seconds


def _records(trials, seconds_per_epoch: float, epochs: int = 100) -> list[Record]:
    return [Record(t.trial_id, t.suite, t.seed, COMPLETED, t.config, dict(t.axes), history=[{"epoch": e + 1}
            for e in range(epochs)], timing={"train_s": seconds_per_epoch * epochs * 0.8,
                                             "eval_s": seconds_per_epoch * epochs * 0.2}) for t in trials]


def test_small_trials_share_tasks_as_far_as_the_slots_allow(tmp_path):
    trials = list(load_suite(str(write_suite(tmp_path, TINY))).trials)
    done, pending = trials[:4], trials[4:]  # 5 s a trial by the records
    chunk, why = auto_chunk(pending, _records(done, 0.05), {"max_parallel": 2})
    assert math.ceil(STARTUP_S / (0.1 * 5.0)) == 10 and chunk == 6, why  # 12 trials over 2 slots, not 10 a task
    assert why == "~5 s a trial from the suite's records, 5 s to start a task, 2 tasks at once"
    chunk, why = auto_chunk(pending, _records(done, 0.05), {"max_parallel": 1})
    assert chunk == 10, why  # one slot: the start-up within 10% of a task, not all 12 in one
    chunk, why = auto_chunk(pending, _records(done, 0.05), {"max_parallel": 64})
    assert chunk == 1, why  # slots to spare: every trial starts at once, which ends soonest
    chunk, why = auto_chunk(pending, _records(done, 0.05), {"max_parallel": 1, "time": "00:00:30"})
    assert chunk == 3 and "half the time limit 00:00:30" in why  # 3 x 5 s <= 15 s


def test_large_trials_get_a_task_each(tmp_path):
    trials = list(load_suite(str(write_suite(tmp_path, TINY))).trials)
    assert auto_chunk(trials[4:], _records(trials[:4], 60.0), {"max_parallel": 2})[0] == 1


def test_without_records_the_budget_estimates_the_time(tmp_path):
    tiny = load_suite(str(write_suite(tmp_path, TINY))).trials
    big = load_suite(str(write_suite(tmp_path, RESNET, "big.yaml"))).trials
    (small_s, small_why), (big_s, big_why) = seconds_from_budget(tiny[0], 1, 0), seconds_from_budget(big[0], 1, 0)
    assert small_why == big_why == ""
    # a digits MLP of 100 epochs: about a second of FLOPs; a ResNet-56 on CIFAR-10 for 100 epochs: days on a core
    assert 0.05 < small_s < 60 and big_s > 100_000 and big_s / small_s > 1e4
    assert seconds_from_budget(big[0], 1, 1)[0] < big_s / 100  # a GPU
    chunk, why = auto_chunk(list(tiny), [], {"max_parallel": 4})
    assert chunk == 4 and "from their budgets" in why
    assert auto_chunk(list(big), [], {"max_parallel": 4, "gpus_per_task": 1})[0] == 1


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm", "groupnorm", "none"])
def test_a_model_is_counted_whatever_its_normalization(tmp_path, norm):
    """BatchNorm in training mode refuses a batch of one (issue 27: every suite with BatchNorm crashed
    submit); the count runs in eval mode and gives the same FLOPs as the model without the layer, give or take
    the normalization's own few."""
    text = TINY.replace("batch_size: 16", f"batch_size: 16\n  norm: {norm}")
    spec = load_suite(str(write_suite(tmp_path, text))).trials[0]
    plain = load_suite(str(write_suite(tmp_path, TINY, "plain.yaml"))).trials[0]
    flops, why = forward_flops(spec)
    assert why == "" and flops == pytest.approx(forward_flops(plain)[0], rel=0.05)
    assert flops > 2 * 64 * 64  # a 64-wide hidden layer at least


def test_a_model_that_cannot_be_counted_falls_back_to_the_per_step_cost(tmp_path):
    """A plugin model whose forward fails on the meta device (it reads its input's values) still gets a chunk;
    the reason is in what submit prints."""
    plugin = tmp_path / "needs_data.py"
    plugin.write_text(textwrap.dedent("""
        import torch
        from harness.api import MODELS

        class Peeky(torch.nn.Module):
            def __init__(self, ctx):
                super().__init__()
                self.fc = torch.nn.Linear(64, ctx.num_classes)

            def forward(self, x):
                if x.flatten(1).sum().item() > 0:  # data-dependent control flow: no value on the meta device
                    x = -x
                return self.fc(x.flatten(1))

        @MODELS.register("peeky")
        def peeky(ctx):
            "A linear classifier whose forward branches on its input values."
            return Peeky(ctx)
    """))
    load_plugins([str(plugin)])
    trials = list(load_suite(str(write_suite(tmp_path, TINY.replace("{name: mlp, depth: 2, width: 64}", "peeky")))).trials)
    seconds, why = seconds_from_budget(trials[0], 1, 0)
    assert seconds > 0 and why.split(":")[0] in ("NotImplementedError", "RuntimeError"), why
    chunk, said = auto_chunk(trials, [], {"max_parallel": 4})
    assert chunk == 4 and "FLOPs not counted" in said and "per-step cost only" in said, said
