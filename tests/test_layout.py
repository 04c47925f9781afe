"""The results-folder layout: one module, importing nothing of the harness, agreeing with the engine."""
import ast
from pathlib import Path

import harness.layout as layout
from harness.engine import checkpoint


def test_layout_imports_nothing_of_the_harness():
    # anything may import it, so it must never be part of an import cycle
    tree = ast.parse(Path(layout.__file__).read_text())
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in modules if m.split(".")[0] == "harness"]


def test_checkpoint_and_weights_paths_agree_with_the_engine(tmp_path):
    # the engine keeps no paths of its own: its checkpoints and saved weights are where the layout says
    assert checkpoint.checkpoint_path is layout.checkpoint_path and checkpoint.weights_path is layout.weights_path
    assert layout.checkpoint_path(tmp_path, "abc") == tmp_path / "checkpoints" / "abc.pt"
    assert layout.weights_path(tmp_path, "abc") == tmp_path / "weights" / "abc.pt"


def test_the_files_of_a_results_folder(tmp_path):
    assert layout.record_path(tmp_path, "abc") == tmp_path / "trials" / "abc.json"
    assert layout.stop_path(tmp_path, "abc") == tmp_path / "checkpoints" / "abc.stop"
    assert layout.lock_path(tmp_path, "abc") == tmp_path / "locks" / "abc.lock"
    plan = layout.plan_file_path(tmp_path, "0123456789ab")
    assert plan == tmp_path / "plans" / "plan-0123456789ab.json"
    assert layout.results_of_plan_file(plan) == tmp_path
    assert layout.compare_dir(tmp_path, "s", "optimizer=lion-1") == tmp_path / "compare" / "s" / "optimizer=lion-1"
