"""Reading a suite file safely: it is shared like code (a paper's repository, a colleague's branch), so
a hostile one (too big, binary, nested without end, an alias bomb, integers past conversion) must be one
``ConfigError`` line within a second or two and a few MB, never a crash or a kill."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

MAX_SUITE_BYTES = 2**20
MAX_DEPTH = 64
MAX_NODES = 100_000  # values of the suite with its YAML aliases expanded (an alias bomb goes far past it)
INT_RANGE = (-2**63, 2**63 - 1)  # what a record's JSON reader (orjson) and torch's seeds take back


def check_integers(value: Any, path: str) -> None:
    """Refuse an integer beyond 64 bits anywhere in ``value``: it would pass every range check, train,
    and write a record that no reader takes back (so the trial would train again on every run)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise ConfigError(path, f"an integer of {len(str(abs(value)))} digits; settings are integers within 64 bits "
                                f"(at most {INT_RANGE[1]:,})")
    if isinstance(value, dict):
        for key, item in value.items():
            check_integers(key, path)
            check_integers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_integers(item, f"{path}[{i}]")


def _check_nodes(node: yaml.Node | None, path: str, depth: int, count: list[int]) -> None:
    """Walk the composed YAML before anything is built from it: refuse what is nested too deep, what
    expands (through aliases) to too many values, and a key given twice in one mapping (YAML would keep
    the last silently, and half a study with it)."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ConfigError(path, f"the suite expands to more than {MAX_NODES} values (YAML aliases inside aliases?)")
    if depth > MAX_DEPTH:
        raise ConfigError(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            where = f"{path}.{name}" if path else str(name)
            if name is not None and name != "<<":
                if name in seen:
                    raise ConfigError(where, f"given twice (lines {seen[name]} and {key.start_mark.line + 1}); "
                                             "a suite names each key once")
                seen[name] = key.start_mark.line + 1
            _check_nodes(value, where, depth + 1, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_nodes(item, f"{path}[{i}]", depth + 1, count)


def read_yaml(file: str) -> tuple[Any, str]:
    """The YAML document of ``file`` and its text; a hostile file is a ``ConfigError`` before anything is built."""
    try:
        data = Path(file).read_bytes()
    except OSError as e:
        raise ConfigError("", f"cannot read suite: {e.strerror}", file) from None
    if len(data) > MAX_SUITE_BYTES:
        raise ConfigError("", f"{len(data)} bytes: a suite is at most {MAX_SUITE_BYTES // 2**20} MiB of YAML", file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("", f"not UTF-8 text (byte {e.start}; a binary file?)", file) from None
    try:
        _check_nodes(yaml.compose(text, Loader=yaml.SafeLoader), "", 0, [0])  # before anything is built from it
        raw = yaml.safe_load(text)
        check_integers(raw, "")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(where, f"YAML syntax error: {problem}", file) from None
    except RecursionError:
        raise ConfigError("", f"nested deeper than {MAX_DEPTH} levels", file) from None
    except ValueError as e:  # an integer past Python's 4300-digit conversion limit
        raise ConfigError("", f"a value YAML cannot convert ({str(e).splitlines()[0][:120]})", file) from None
    except ConfigError as e:
        raise e.in_file(file) from None
    return raw, text
