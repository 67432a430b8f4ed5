"""Kubernetes label and field selectors in their query-string form (`labelSelector=`,
`fieldSelector=`), parsed once and matched against plain object dicts.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a` (exists), `!a`
(does not exist), comma-joined (AND). As in Kubernetes, `!=` and `notin` also match objects
without the label.

Field selectors: `path=value`, `path==value`, `path!=value`, comma-joined. Any dotted path into the
object is accepted (the real server allows only a per-kind list such as metadata.name,
metadata.namespace, spec.nodeName); a missing field compares as "".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector string that does not parse (the API server answers 400 Bad Request)."""


_LABEL_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_LABEL_VALUE = r"[-A-Za-z0-9_.]*"
_SET_TERM = re.compile(rf"^\s*(?P<key>{_LABEL_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")
_EQ_TERM = re.compile(
    rf"^\s*(?P<key>{_LABEL_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_LABEL_VALUE})\s*$"
)
_EXISTS_TERM = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_LABEL_KEY})\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # "in", "notin", "exists", "!exists" ("=" is "in" with one value)
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "in":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values  # notin


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside a `( ... )` value set."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [term for term in terms if term.strip()]


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        requirements = []
        for term in _split_terms(text):
            if m := _SET_TERM.match(term):
                values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
                requirements.append(Requirement(m["key"], m["op"], values))
            elif m := _EQ_TERM.match(term):
                operator = "notin" if m["op"] == "!=" else "in"
                requirements.append(Requirement(m["key"], operator, frozenset([m["value"]])))
            elif m := _EXISTS_TERM.match(term):
                requirements.append(Requirement(m["key"], "!exists" if m["neg"] else "exists"))
            else:
                raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
        return cls(tuple(requirements))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...]  # (path, equal, value)

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        terms = []
        for term in _split_terms(text):
            m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
            if m is None:
                raise SelectorError(f"invalid field selector: {term.strip()!r}")
            terms.append((m[1], m[2] != "!=", m[3]))
        return cls(tuple(terms))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in self.terms)
