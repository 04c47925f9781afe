"""Process-wide settings of ``harness.engine.runtime``: the CPU allocator tuning a trial records, and a
fused pack that never imports ``torch._dynamo`` (1.7 s of every process start) while a compiled trial
still gets torch's dynamo-disabling wrappers back."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO, write_suite

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


PLUGIN_SUITE = SUITE.replace("seeds: 2", "seeds: [0]") + "grid:\n  regularizers: [[{name: leaks_settings}], []]\n"


def _register_leaky() -> None:
    import torch
    from harness.api import REGULARIZERS, Parts

    if "leaks_settings" in REGULARIZERS:
        return

    @REGULARIZERS.register("leaks_settings")
    def leaks_settings(ctx):
        """Sets process-wide torch state while it trains, as a careless plugin would."""
        def batch(x, y, rng):
            torch.set_default_dtype(torch.float64)
            torch.autograd.set_detect_anomaly(True)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.set_float32_matmul_precision("medium")
            return x, y

        return Parts(batch=batch)


def test_a_trial_that_changes_torchs_process_settings_leaves_the_next_trial_untouched(tmp_path):
    """The plugin's trial is warned, torch's settings are put back, and the built-in trial after it in
    the same process completes (at float64 by default its float32 batches would not meet its weights)."""
    import torch
    from harness.engine import run_trial
    from harness.suite import load_suite

    _register_leaky()
    leaky, plain = load_suite(str(write_suite(tmp_path, PLUGIN_SUITE)), []).trials
    assert leaky.config["regularizers"] and not plain.config["regularizers"]
    first = run_trial(leaky)
    assert torch.get_default_dtype() == torch.float32 and not torch.is_anomaly_enabled()
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_float32_matmul_precision() == "highest"
    [warning] = first.diagnostics["warnings"][-1:]
    assert "the trial's code changed torch's process-wide settings" in warning
    for change in ("default dtype torch.float64 → torch.float32", "anomaly detection True → False",
                   "deterministic algorithms True → False", "float32 matmul precision medium → highest"):
        assert change in warning
    second = run_trial(plain)
    assert second.status == "completed", second.reason
    assert not any("process-wide" in w for w in second.diagnostics.get("warnings", []))


def test_settings_changed_before_a_trial_are_reset_for_it_and_given_back_after(tmp_path):
    import torch
    from harness.engine import run_trial
    from harness.suite import load_suite

    plain = load_suite(str(write_suite(tmp_path, PLUGIN_SUITE.replace("[{name: leaks_settings}], ", ""))),
                       []).trials[0]
    torch.set_default_dtype(torch.float64)
    torch.set_float32_matmul_precision("high")  # a speed choice for the whole process (TF32): kept
    try:
        record = run_trial(plain)
        assert torch.get_default_dtype() == torch.float64  # the caller's own setting, back
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_float32_matmul_precision("highest")
    assert record.status == "completed", record.reason
    assert any("changed before the trial" in w and "default dtype torch.float64 → torch.float32" in w
               for w in record.diagnostics["warnings"])
    assert not any("matmul" in w for w in record.diagnostics["warnings"])
