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
    """A name alone resolves to every parameter of the component's schema at its declared default (a nested
    component at its own resolved default), and each default passes its own type and range checks."""
    assert registry.names()
    for entry in registry:
        assert entry.description, f"{registry.kind} {entry.name} needs a docstring"
        resolved = registry.resolve(entry.name, "x")
        assert list(resolved) == ["name", *entry.params], f"{registry.kind} {entry.name}: {list(resolved)}"
        for name, param in entry.params.items():
            assert not param.required, f"{registry.kind} {entry.name}.{name} has no default"
            default = param.component_of.resolve(param.default, "x") if param.component_of else param.default
            assert resolved[name] == default, f"{registry.kind} {entry.name}.{name}: {resolved[name]!r}"
        given = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}  # as YAML writes it
        assert registry.resolve(given, "x") == given, f"{registry.kind} {entry.name}: a default fails its checks"


@pytest.mark.parametrize("registry", [ACTIVATIONS, LOSSES, OPTIMIZERS], ids=lambda r: r.kind)
def test_every_cheap_component_builds_and_works_with_its_defaults(registry):
    """Each with its capabilities read as the engine reads them; a plugin registered by an earlier test is
    in the registry too and is held to the same."""
    import torch

    torch.manual_seed(0)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    for entry in registry:
        layer = torch.nn.Linear(3, 4)  # a fresh one: an optimizer's steps are not the next one's start
        config = registry.resolve(entry.name, "x")
        if registry is OPTIMIZERS:
            # an optimizer with its own group rules (Muon) steps only the matrices it claims
            params = [layer.weight] if entry.caps.rules else list(layer.parameters())
            opt = registry.build(config, params)
            if entry.caps.train_eval:
                opt.train()  # Schedule-Free refuses to step in eval mode
            before = layer.weight.detach().clone()

            def closure():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(layer(x), y)
                loss.backward(create_graph=entry.caps.create_graph)  # Hessian-vector optimizers need the graph
                return loss

            closure()
            opt.step(closure)
            assert not torch.equal(layer.weight, before), f"optimizer {entry.name} did not move the weights"
        elif registry is LOSSES:
            loss = registry.build(config)(layer(x), y)
            assert loss.ndim == 0 and torch.isfinite(loss), f"loss {entry.name}"
        else:
            out = registry.build(config)(layer(x))
            assert out.shape[0] == 5 and torch.isfinite(out).all(), f"activation {entry.name}"


def test_a_misspelt_capability_is_an_error_when_registering():
    from harness.registries import OptimizerCaps

    reg = Registry("optimizer", OptimizerCaps)
    with pytest.raises(TypeError, match="needs_clousre"):
        reg.register("mine", needs_clousre=True)
    reg.register("ok", needs_closure=True)(lambda params, *, lr=0.1: None)
    assert reg.get("ok").caps.needs_closure and not reg.get("ok").caps.create_graph
