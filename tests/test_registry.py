from typing import Annotated, Literal

import pytest

from harness.components import ACTIVATIONS, INITS, LOSSES, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES
from harness.data import DATASETS
from harness.errors import ConfigError
from harness.models import MODELS
from harness.registry import Range, Registry

ALL = [DATASETS, MODELS, INITS, NORMS, ACTIVATIONS, OPTIMIZERS, SCHEDULES, REGULARIZERS, LOSSES]


def test_parameters_come_from_the_signature():
    reg = Registry("thing")

    @reg.register("a")
    def a(ctx, *, lr: Annotated[float, Range(gt=0)] = 0.1, mode: Literal["x", "y"] = "x", n: int = 3):
        """First line is the description.

        More text."""

    entry = reg.get("a")
    assert list(entry.params) == ["lr", "mode", "n"]
    assert entry.description == "First line is the description."
    assert reg.resolve("a", "p") == {"name": "a", "lr": 0.1, "mode": "x", "n": 3}
    assert reg.resolve({"name": "a", "lr": 1, "n": 5}, "p") == {"name": "a", "lr": 1.0, "mode": "x", "n": 5}


def test_duplicate_name_is_an_error():
    reg = Registry("thing")
    reg.register("a")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: None)


@pytest.mark.parametrize("value,path,message", [
    ({"name": "nesterv"}, "p.name", "did you mean 'nesterov'"),
    ({"name": "sgd", "lr": -1}, "p.lr", "must be > 0"),
    ({"name": "sgd", "lr": "fast"}, "p.lr", "expected a number"),
    ({"name": "sgd", "learning_rate": 0.1}, "p.learning_rate", "unknown key"),
    ({"lr": 0.1}, "p", "missing 'name'"),
    (3, "p", "expected a optimizer name"),
])
def test_bad_component_config_names_the_key_path(value, path, message):
    with pytest.raises(ConfigError) as e:
        OPTIMIZERS.resolve(value, "p")
    assert e.value.path == path
    assert message in e.value.message


def test_yaml_style_exponent_strings_are_numbers():
    # YAML 1.1 reads `1e-3` (no dot) as a string; users mean a number.
    assert OPTIMIZERS.resolve({"name": "adam", "lr": "1e-3"}, "p")["lr"] == 1e-3


@pytest.mark.parametrize("registry", ALL, ids=lambda r: r.kind)
def test_every_component_has_a_description_and_resolves_with_defaults(registry):
    assert registry.names()
    for entry in registry:
        assert entry.description, f"{registry.kind} {entry.name} needs a docstring"
        resolved = registry.resolve(entry.name, "x")
        assert resolved["name"] == entry.name


def test_a_misspelt_capability_is_an_error_when_registering():
    from harness.registries import OptimizerCaps

    reg = Registry("optimizer", OptimizerCaps)
    with pytest.raises(TypeError, match="needs_clousre"):
        reg.register("mine", needs_clousre=True)
    reg.register("ok", needs_closure=True)(lambda params, *, lr=0.1: None)
    assert reg.get("ok").caps.needs_closure and not reg.get("ok").caps.create_graph
