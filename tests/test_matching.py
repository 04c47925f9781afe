"""One matcher (harness/matching.py) for a suite's ``exclude`` rules and a claim's selectors: the same rule
drops from a grid exactly the trials a claim's ``where`` would choose, list-valued settings included."""
import pytest
from conftest import write_suite

from harness.claims import selects
from harness.matching import matches
from harness.suite import load_suite

# Three values of a list-valued setting; the label of each trial is its regularizers' names.
GRID = """
name: m
seeds: [0]
base:
  dataset: {name: digits, val_size: 200, train_subset: 200}
  model: {name: mlp, depth: 1, width: 16}
grid:
  regularizers: [[], [dropout], [{name: dropout, p: 0.2}, cutout], [cutout, dropout]]
  optimizer.lr: [0.1, 0.01]
"""


def _label(config: dict) -> str:
    return "+".join(r["name"] for r in config["regularizers"]) or "-"


@pytest.mark.parametrize("rule, chosen", [
    # a list setting is matched whole, in order: [dropout] is dropout alone, not "has dropout"
    ({"regularizers": ["dropout"]}, {"dropout"}),
    ({"regularizers": []}, {"-"}),
    ({"regularizers": ["dropout", "cutout"]}, {"dropout+cutout"}),
    ({"regularizers": [{"name": "dropout", "p": 0.2}, {"name": "cutout"}]}, {"dropout+cutout"}),
    ({"regularizers": [{"name": "dropout", "p": [0.2, 0.5]}, "cutout"]}, {"dropout+cutout"}),  # a parameter's alternatives
    # alternatives for a list setting are lists
    ({"regularizers": [[], ["dropout"]]}, {"-", "dropout"}),
    ({"regularizers": [["cutout", "dropout"], ["dropout", "cutout"]]}, {"cutout+dropout", "dropout+cutout"}),
    ({"regularizers": [["dropout"], ["cutout"]]}, {"dropout"}),  # no "contains": [cutout] is no trial's list
])
def test_exclude_drops_exactly_the_trials_a_claim_selects(tmp_path, rule, chosen):
    every = load_suite(write_suite(tmp_path, GRID)).trials
    kept = load_suite(write_suite(tmp_path, GRID + f"exclude: [{rule}]\n", "excluded.yaml")).trials
    excluded = {t.trial_id for t in every} - {t.trial_id for t in kept}
    selected = {t.trial_id for t in every if selects(rule, t.config)}
    assert excluded == selected
    assert {_label(t.config) for t in every if t.trial_id in selected} == chosen
    assert len(selected) == 2 * len(chosen)  # both learning rates of each chosen list


def test_scalar_alternatives_components_and_partial_mappings():
    adam = {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999]}
    assert matches(0.1, [0.1, 0.01]) and not matches(0.1, [])
    assert matches(adam, "adam") and not matches(adam, "sgd")
    assert matches(adam, {"name": "adam", "betas": [0.9, 0.999]})  # a list parameter is a value, not alternatives
    assert matches(adam, {"lr": [0.1, 0.01]}) and not matches(adam, {"lr": 0.1})
    assert matches({"name": "torch.optim.NAdam", "lr": 0.01}, {"class": "torch.optim.NAdam"})
    assert matches({"epochs": 3, "steps": None}, {"epochs": 3})  # a section without a name matches partially
    assert not matches(["a", "d"], [["a", "b"], ["c", "d"]])  # two alternatives, not "a or b, then c or d"
