"""Plugins: user modules that add components to the registries, with no edit to the harness.

A plugin is a Python file (``--plugin path/to/my_optimizer.py``), an importable module
(``--plugin my_pkg.my_module``), or a module named by an entry point in the ``harness.plugins``
group of an installed package. Importing it runs its ``@REGISTRY.register`` decorators. What was
loaded (name and source hash) goes into every record, so a result says which code made it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.errors import UsageError

ENTRY_POINT_GROUP = "harness.plugins"
LOADED: dict[str, dict[str, Any]] = {}  # plugin as given -> {name, source, sha256, version}


def _describe(given: str, module: Any, imported: set[str]) -> dict[str, Any]:
    source = getattr(module, "__file__", None)
    sha = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source and Path(source).exists() else None
    return {"plugin": given, "module": module.__name__, "source": source, "sha256": sha,
            "version": getattr(module, "__version__", None), "packages": packages_of(imported)}


def _used(module: Any) -> set[str]:
    """The modules whose names a plugin holds (``import x``, ``from x import Y``): imported before it too."""
    out = set()
    for value in vars(module).values():
        name = value.__name__ if isinstance(value, type(sys)) else getattr(value, "__module__", None)
        if isinstance(name, str):
            out.add(name)
    return out


def packages_of(modules: set[str]) -> dict[str, str]:
    """The installed distributions (and their versions) of the top-level modules of ``modules``: those a
    plugin's import brought in, a wrapped optimizer's package (``adan-pytorch 0.1.0``), or the package of an
    optimizer class named by import path, so a record names the code it ran, not only the plugin file's
    hash. The harness and the standard library are left out."""
    tops = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"harness"}
    if not tops:  # a built-in optimizer's record: no scan of every installed distribution
        return {}
    owners = metadata.packages_distributions()
    out = {}
    for top in sorted(tops):
        for dist in owners.get(top, []):
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return out


def load_plugin(given: str) -> dict[str, Any]:
    """Import one plugin (a file path or a module name) once; returns its description."""
    path = Path(given).expanduser().resolve() if given.endswith(".py") or "/" in given else None
    key = str(path) if path is not None else given  # one file by two paths (relative, absolute) loads once
    if key in LOADED:
        return LOADED[key]
    # The harness registries must exist before a plugin decorates into them.
    import harness.components  # noqa: F401
    import harness.data  # noqa: F401
    import harness.models  # noqa: F401

    before = set(sys.modules)
    try:
        if path is not None:
            if not path.is_file():
                raise UsageError(f"plugin {given}: no such file")
            name = f"harness_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(given)
    except UsageError:
        raise
    except SystemExit as e:  # a plugin's import must not end the command (with exit 0 and nothing run)
        raise UsageError(f"plugin {given}: it called sys.exit({e.code!r}) while being imported") from None
    except Exception as e:  # noqa: BLE001 - any error in user code is reported as bad input
        raise UsageError(f"plugin {given}: {type(e).__name__}: {e}") from None
    LOADED[key] = _describe(given, module, (set(sys.modules) - before) | _used(module))
    return LOADED[key]


def load_plugins(plugins: list[str] | None, entry_points: bool = True) -> list[dict[str, Any]]:
    out = []
    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            out.append(load_plugin(ep.value))
    for given in plugins or []:
        out.append(load_plugin(given))
    return out
