"""Does a trial's resolved config match a rule written as a suite writes settings?

One matcher for every place a suite names trials by their settings: ``exclude`` rules, a claim's
``where``/``compare``/``against`` selectors, and the choices a refined random search keeps. They
used to be three functions that disagreed on list values (``exclude: [{regularizers: [dropout]}]``
excluded nothing while the same selector in ``where`` chose the dropout trials).

A rule maps dotted setting names to wanted values; it matches when every key matches:

- a name matches a component by name: ``relu`` matches ``{name: relu, ...}``;
- a mapping matches when each key it gives matches, recursively, and the rest are free:
  ``{name: adam, betas: [0.9, 0.99]}``; ``class`` is read as ``name`` (an import-path component is
  stored under its path as the name);
- a list is first read as the value itself when the setting is a list (``regularizers: [dropout]``
  matches exactly one regularizer, dropout; ``regularizers: []`` a trial with none; ``optimizer.betas:
  [0.9, 0.999]``): same length, item by item, in order;
- otherwise a list is a set of alternatives, any of which may match (``optimizer.lr: [0.1, 0.01]``;
  for a list-valued setting the alternatives are lists: ``regularizers: [[dropout], []]``). A list
  setting is matched whole: ``[dropout]`` does not match ``[dropout, mixup]``, and neither does
  ``[[dropout]]``, so "contains" is never implied;
- anything else matches by equality.
"""
from __future__ import annotations

from typing import Any

from harness.spec import get_dotted


def matches(actual: Any, wanted: Any, alternatives: bool = True) -> bool:
    """``actual`` (a resolved setting) against ``wanted`` (as the suite writes it). ``alternatives`` is off for
    the items of a list and for an alternative itself, so a list of lists has one reading: ``[[a, b], [c, d]]``
    is two alternatives for a two-item list, never "a or b, then c or d"."""
    if isinstance(wanted, list):
        if isinstance(actual, list) and len(actual) == len(wanted) and \
                all(matches(a, w, False) for a, w in zip(actual, wanted)):
            return True
        return alternatives and any(matches(actual, w, False) for w in wanted)
    if isinstance(actual, str) and isinstance(wanted, dict):
        actual = {"name": actual}  # a component given by name only has every parameter at its default
    if isinstance(actual, dict) and isinstance(wanted, dict):
        return all(_key(actual, k) in actual and matches(actual[_key(actual, k)], v) for k, v in wanted.items())
    if isinstance(actual, dict) and isinstance(wanted, str) and "name" in actual:
        return actual["name"] == wanted
    return actual == wanted


def _key(actual: dict[str, Any], key: str) -> str:
    return "name" if key == "class" and "class" not in actual else key


def selects(rule: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether ``config`` (a resolved trial config) matches every ``dotted.key: value`` of ``rule``; a key the
    config lacks matches nothing."""
    for key, wanted in rule.items():
        try:
            actual = get_dotted(config, key)
        except KeyError:
            return False
        if not matches(actual, wanted):
            return False
    return True
