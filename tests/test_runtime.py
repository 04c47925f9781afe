"""Process-wide settings of ``harness.engine.runtime``: the CPU allocator tuning a trial records, and a
fused pack that never imports ``torch._dynamo`` (1.7 s of every process start) while a compiled trial
still gets torch's dynamo-disabling wrappers back."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO

PACK_THEN_RESTORE = """
import sys
from harness.suite import load_suite
from harness.fused.pack import run_pack
records = run_pack(list(load_suite(sys.argv[1], []).trials))
assert all(r.status == "completed" for r in records), [r.reason for r in records]
print("pack imported dynamo:", "torch._dynamo" in sys.modules)
import torch
from harness.engine import runtime
plain = torch.optim.Optimizer.zero_grad.__wrapped__
print("deferred:", plain.__dict__.get("__dynamo_disable") is plain)
runtime.restore_dynamo()
print("restored:", "__dynamo_disable" not in plain.__dict__)
m = torch.nn.Linear(2, 2)
torch.optim.SGD(m.parameters(), lr=0.1).zero_grad()
print("imported after restore:", "torch._dynamo" in sys.modules)
print("malloc:", records[0].environment["malloc"], records[0].environment["flush_denormal"])
"""

SUITE = """
name: runtime
seeds: 2
budget: {epochs: 1}
base:
  dataset: {name: digits, val_size: 100, train_subset: 200}
  model: {name: mlp, depth: 1, width: 16}
  optimizer: {name: momentum, lr: 0.05, momentum: 0.9}
  batch_size: 50
"""


def test_a_pack_leaves_dynamo_unimported_and_a_compiled_trial_gets_torchs_wrappers_back(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    out = subprocess.run([sys.executable, "-c", PACK_THEN_RESTORE, str(suite)], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert "pack imported dynamo: False" in out
    assert "deferred: True" in out and "restored: True" in out
    assert "imported after restore: True" in out  # torch's wrapper imports it again, as torch intends
    if sys.platform.startswith("linux"):
        assert "malloc: glibc mmap threshold 32 MiB" in out and out.strip().endswith("True")


def test_a_trial_alone_records_the_cpu_settings_it_ran_under(tmp_path):
    from harness.engine import run_trial
    from harness.suite import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    record = run_trial(load_suite(str(suite), []).trials[0])
    assert record.environment["flush_denormal"] is True
    if sys.platform.startswith("linux"):
        assert record.environment["malloc"].startswith("glibc mmap threshold")
