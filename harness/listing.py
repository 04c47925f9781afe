"""What ``harness list`` prints: the components of each registry with their parameters, and (``harness
list settings``) every key a suite accepts. Both read the declarations validation checks against (the
registries; ``harness.settings``; ``harness.suite.SUITE_KEYS``), so the listing cannot drift from what
a suite may say. The README's settings reference is this output (a test keeps the two equal)."""
from __future__ import annotations

import inspect
import textwrap
from typing import Callable, Iterator

from harness.errors import UsageError

WIDTH = 100
SETTINGS = "settings"


def _registries() -> list:
    from harness.components import ACTIVATIONS, INITS, LOSSES, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES
    from harness.data import DATASETS
    from harness.models import MODELS

    return [DATASETS, MODELS, INITS, NORMS, ACTIVATIONS, OPTIMIZERS, SCHEDULES, REGULARIZERS, LOSSES]


def listing(kind: str | None = None) -> Iterator[str]:
    """The lines of ``harness list [KIND]``: every registry, one (``optimizers``, ``optimizer``), or the settings."""
    from harness.registry import near_miss

    registries = _registries()
    kinds = {r.kind: r for r in registries}
    if kind is not None:
        if kind.rstrip("s") == SETTINGS.rstrip("s"):
            yield from settings()
            return
        name = next((k for k in kinds if kind in (k, _plural(k))), kind)
        if name not in kinds:
            raise UsageError(f"unknown kind {kind!r}; {near_miss(kind, [*kinds, SETTINGS])}")
        registries = [kinds[name]]
    for registry in registries:
        yield f"{_plural(registry.kind)}:"
        width = max(len(n) for n in registry.names()) + 2
        for entry in registry:
            yield f"  {entry.name:<{width}}{entry.description}"
            for param in entry.params.values():
                yield f"  {'':<{width + 2}}{param.describe()}"
        if registry.paths_help:
            yield "  {class: module.Class, parameters}"
            yield from _wrap(registry.paths_help, width + 2)


def _plural(kind: str) -> str:
    return f"{kind}es" if kind.endswith("s") else f"{kind}s"


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _wrap(text: str, indent: int) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), WIDTH, initial_indent=" " * indent, subsequent_indent=" " * indent)


def _section(key: str, builder: Callable, width: int) -> Iterator[str]:
    from harness.registry import params_of

    yield f"  {key}"
    yield from _wrap(inspect.getdoc(builder) or "", width + 2)
    for param in params_of(builder).values():
        yield f"{'':<{width + 4}}{key}.{param.describe()}"


def settings() -> Iterator[str]:
    """Every suite key and every trial setting: what it is, its parameters with types, bounds and defaults."""
    from harness.settings import (COMPONENTS, LISTS, SCALARS, SECTION_BUILDERS, SUITE_SECTION_BUILDERS, _param_groups,
                                  _scalars)
    from harness.suite import SUITE_KEYS

    width = 2 + max(len(k) for k in [*SUITE_KEYS, *COMPONENTS, *LISTS, *SECTION_BUILDERS])
    yield "suite keys (the top level of a suite file):"
    for key, text in SUITE_KEYS.items():
        if key in SUITE_SECTION_BUILDERS:
            yield from _section(key, SUITE_SECTION_BUILDERS[key], width)
        else:
            lines = _wrap(text, width + 2)
            yield f"  {key:<{width}}{lines[0].lstrip()}"
            yield from lines[1:]
    yield ""
    yield "trial settings (under base:, or varied as grid/zip/random axes by dotted key, e.g. optimizer.lr):"
    for key, (registry, default) in COMPONENTS.items():
        yield f"  {key:<{width}}{_a(registry.kind)} (harness list {_plural(registry.kind)}), default {default}; " \
              "a name or {name: ..., parameters}"
        if registry.paths_help:
            yield from _wrap(f"or {{class: module.Class, parameters}}: {registry.paths_help}", width + 2)
    for key, registry in LISTS.items():
        yield f"  {key:<{width}}a list of {_plural(registry.kind)} (harness list {_plural(registry.kind)}), default none"
    for key, builder in SECTION_BUILDERS.items():
        yield from _section(key, builder, width)
    yield from _section("param_groups", _param_groups, width)
    yield "  plain values"
    yield from _wrap(inspect.getdoc(_scalars) or "", width + 2)
    for param in SCALARS.values():
        yield f"{'':<{width + 4}}{param.describe()}"
