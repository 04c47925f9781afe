"""One generic registry; every component kind (optimizer, schedule, init, ...) is an instance.

A component is a builder function. Its keyword-only parameters are the component's
configuration: their defaults, types and bounds (``Annotated[float, Range(gt=0)]``) are read
from the signature, so ``harness list`` and suite validation never drift from the code.
Positional parameters are the context the harness passes in (model parameters, a module, ...).
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from harness.errors import ConfigError

_MISSING = inspect.Parameter.empty


@dataclass(frozen=True)
class Range:
    """Bounds for a numeric parameter; ``None`` means unbounded on that side."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def check(self, value: float) -> str | None:
        if self.gt is not None and not value > self.gt:
            return f"must be > {self.gt}"
        if self.ge is not None and not value >= self.ge:
            return f"must be >= {self.ge}"
        if self.lt is not None and not value < self.lt:
            return f"must be < {self.lt}"
        if self.le is not None and not value <= self.le:
            return f"must be <= {self.le}"
        return None

    def __str__(self) -> str:
        parts = []
        for op, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)):
            if bound is not None:
                parts.append(f"{op}{bound}")
        return ",".join(parts)


@dataclass(frozen=True)
class ComponentOf:
    """Marks a string parameter whose value must name a component of another registry."""

    registry: "Registry"


@dataclass(frozen=True)
class Param:
    name: str
    type: Any
    default: Any = _MISSING
    range: Range | None = None
    component_of: "Registry | None" = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def describe(self) -> str:
        text = f"{self.name}: {_type_name(self.type)}"
        if self.range is not None:
            text += f" ({self.range})"
        if self.component_of is not None:
            text += f" (a {self.component_of.kind})"
        return text + ("" if self.required else f" = {self.default!r}")


Compatible = Callable[[dict[str, Any]], "str | None"]  # a resolved trial config -> why not, or None


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    builder: Callable[..., Any]
    params: dict[str, Param]
    description: str
    caps: Any = None  # the registry's capability dataclass, filled in
    compatible: Compatible | None = None

    @property
    def meta(self) -> Mapping[str, Any]:
        """The capabilities as a read-only mapping."""
        return types.MappingProxyType(dataclasses.asdict(self.caps)) if self.caps is not None else {}

    def build(self, *context: Any, **params: Any) -> Any:
        return self.builder(*context, **params)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return "|".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Annotated:
        base, *extras = typing.get_args(tp)
        bounds = [str(e) for e in extras if isinstance(e, Range)]
        return _type_name(base) + (f" ({', '.join(bounds)})" if bounds else "")
    if origin is tuple and len(_fixed(tp)) > 1:
        return f"[{', '.join(_type_name(a) for a in _fixed(tp))}]"
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list[{_type_name(args[0])}]" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _fixed(tp: Any) -> tuple[Any, ...]:
    """The item types of a fixed-length tuple type (``tuple[float, float]``); () for any other."""
    args = typing.get_args(tp)
    return () if typing.get_origin(tp) is not tuple or Ellipsis in args else args


def _setting_hints(builder: Callable[..., Any]) -> dict[str, Any]:
    """The evaluated annotations of ``builder``. A component module imports torch only inside its
    builders (so that reading a registry does not cost torch's import), so the annotations of the
    context and the result (``params: Iterable[torch.Tensor]``, ``-> nn.Module``) may name what only a
    type checker imports; the settings, keyword-only, are then evaluated alone."""
    try:
        return typing.get_type_hints(builder, include_extras=True)
    except NameError:
        pass
    settings = {p.name for p in inspect.signature(builder).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    given = {k: v for k, v in getattr(builder, "__annotations__", {}).items() if k in settings}
    globalns = getattr(inspect.unwrap(builder), "__globals__", {})
    return typing.get_type_hints(types.SimpleNamespace(__annotations__=given), globalns, include_extras=True)


def params_of(builder: Callable[..., Any]) -> dict[str, Param]:
    """The keyword-only parameters of ``builder``: a component's (or a config section's) settings."""
    hints = _setting_hints(builder)
    params: dict[str, Param] = {}
    for p in inspect.signature(builder).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        tp, bounds, ref = hints.get(p.name, Any), None, None
        if typing.get_origin(tp) is typing.Annotated:
            tp, *extras = typing.get_args(tp)
            for extra in extras:
                if isinstance(extra, Range):
                    bounds = extra
                elif isinstance(extra, ComponentOf):
                    ref = extra.registry
        params[p.name] = Param(p.name, tp, p.default, bounds, ref)
    return params


def check_value(tp: Any, value: Any, path: str) -> Any:
    """Return ``value`` converted to ``tp`` (int→float only), or raise ConfigError at ``path``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Annotated:
        base, *extras = typing.get_args(tp)
        value = check_value(base, value, path)
        for extra in extras:
            problem = extra.check(value) if isinstance(extra, Range) else None
            if problem:
                raise ConfigError(path, f"{problem}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        real = [o for o in options if o is not type(None)]
        if len(real) == 1:
            return check_value(real[0], value, path)
        for option in options:
            if option is type(None):
                continue
            try:
                return check_value(option, value, path)
            except ConfigError:
                pass
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(path, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        fixed = _fixed(tp)
        if len(fixed) > 1:  # betas=(0.9, 0.999): a YAML list of exactly that many
            if len(value) != len(fixed):
                raise ConfigError(path, f"expected a list of {len(fixed)} ({_type_name(tp)}), got {value!r}")
            return [check_value(t, v, f"{path}[{i}]") for i, (t, v) in enumerate(zip(fixed, value))]
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args else Any
        return [check_value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        # YAML reads 1e-3 as a string (YAML 1.1 wants a dot); accept it as users mean it.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(path, f"expected a finite number, got an integer of {len(str(value))} digits") from None
        if not math.isfinite(value):  # .inf and .nan would pass every range check, and break the trial id
            raise ConfigError(path, f"expected a finite number, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp in _PLAIN and not isinstance(value, tp):
        raise ConfigError(path, f"expected {_PLAIN[tp]}, got {value!r}")
    return value


_PLAIN = {bool: "true or false", str: "a string", dict: "a mapping"}


def check_keys(value: dict[str, Any], allowed: list[str], path: str, what: str) -> None:
    """Reject the first key of ``value`` not in ``allowed``, suggesting the nearest."""
    for key in value:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown {what}; {near_miss(str(key), list(allowed))}")


def near_miss(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}?"
    return f"expected one of {', '.join(sorted(options))}"


def resolve_params(params: dict[str, Param], value: dict[str, Any], path: str, owner: str) -> dict[str, Any]:
    """Check ``value`` against ``params``: no unknown keys, right types, in range; fill defaults."""
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a mapping, got {value!r}")
    check_keys(value, list(params), path, f"key of {owner}")
    resolved: dict[str, Any] = {}
    for pname, param in params.items():
        ppath = f"{path}.{pname}"
        if param.component_of is not None:  # a nested component: a name or a mapping, stored resolved
            if pname not in value and param.required:
                raise ConfigError(ppath, f"required by {owner}")
            resolved[pname] = param.component_of.resolve(value.get(pname, param.default), ppath)
            continue
        if pname not in value:
            if param.required:
                raise ConfigError(ppath, f"required by {owner}")
            resolved[pname] = param.default
            continue
        v = check_value(param.type, value[pname], ppath)
        if param.range is not None and isinstance(v, (int, float)):
            problem = param.range.check(v)
            if problem:
                raise ConfigError(ppath, f"{problem}, got {v!r}")
        resolved[pname] = v
    return resolved


class Registry:
    """Named builders of one component kind. ``REG.register(name, compatible=..., **caps)`` is a
    decorator; ``caps`` are the fields of the registry's capability dataclass."""

    def __init__(self, kind: str, caps: type | None = None) -> None:
        self.kind = kind
        self.caps_type = caps
        self._entries: dict[str, Entry] = {}
        self._from_path: Callable[[str, str], Entry] | None = None
        self._imported: dict[str, Entry] = {}  # import path -> its entry, made once per process
        self.paths_help: str | None = None  # what `harness list` says of {class: module.Class}, where taken

    def import_paths(self, make: Callable[[str, str], Entry], help: str) -> None:
        """Let a dotted name (``module.Class``, or ``{class: module.Class}`` in a suite) stand for the entry
        ``make(path, key_path)`` builds from that import path: another package's component taken as it is,
        with no plugin. Registered names never hold a dot, so the two cannot collide."""
        self._from_path, self.paths_help = make, help

    def register(self, name: str, compatible: Compatible | None = None,
                 **caps: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if self.caps_type is not None:
            try:
                typed = self.caps_type(**caps)
            except TypeError:
                known = [f.name for f in dataclasses.fields(self.caps_type)]
                raise TypeError(f"{self.kind} {name!r}: unknown capability among {sorted(caps)}; the known "
                                f"ones are {', '.join(known) or 'none'}") from None
        else:
            typed = None

        def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
            if self._from_path is not None and "." in name:
                raise ValueError(f"{self.kind} {name!r}: a name with a dot is an import path here; use another name")
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = inspect.getdoc(builder) or ""
            self._entries[name] = Entry(
                self.kind, name, builder, params_of(builder), doc.split("\n")[0], typed, compatible
            )
            return builder

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries[n] for n in self.names())

    def get(self, name: str, path: str | None = None) -> Entry:
        if name in self._entries:
            return self._entries[name]
        if self._from_path is not None and isinstance(name, str) and "." in name:
            if name not in self._imported:  # failures are not kept: each names its own key path
                self._imported[name] = self._from_path(name, path or self.kind)
            return self._imported[name]
        raise ConfigError(path or self.kind, f"unknown {self.kind} {name!r}; {near_miss(str(name), self.names())}")

    def resolve(self, value: Any, path: str) -> dict[str, Any]:
        """Normalize ``name`` or ``{name: ..., **params}`` (or ``{class: module.Class, **params}`` where
        import paths are taken) into a dict with every parameter; an import path is stored as the name."""
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict) and "class" in value and self._from_path is not None:
            value = self._class_as_name(value, path)
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a {self.kind} name or a mapping with 'name', got {value!r}")
        if "name" not in value:
            raise ConfigError(path, f"missing 'name' of the {self.kind}")
        if not isinstance(value["name"], str):
            raise ConfigError(f"{path}.name", f"expected a {self.kind} name, got {value['name']!r}")
        entry = self.get(value["name"], f"{path}.name")
        params = {k: v for k, v in value.items() if k != "name"}
        return {"name": entry.name, **resolve_params(entry.params, params, path, f"{self.kind} {entry.name!r}")}

    def _class_as_name(self, value: dict[str, Any], path: str) -> dict[str, Any]:
        if "name" in value:
            raise ConfigError(path, f"give 'name' (a registered {self.kind}) or 'class' (an import path), not both")
        given = value["class"]
        if not isinstance(given, str) or "." not in given.strip("."):
            raise ConfigError(f"{path}.class", f"expected an import path like module.Class, got {given!r}")
        self.get(given, f"{path}.class")  # an import error names the class key, not name
        return {"name": given, **{k: v for k, v in value.items() if k != "class"}}

    def build(self, config: dict[str, Any], *context: Any) -> Any:
        params = {k: v for k, v in config.items() if k != "name"}
        return self.get(config["name"]).build(*context, **params)
