"""metav1.Condition lists, as pure functions: set one condition, keep lastTransitionTime
unless the status flips, and say whether anything changed (so callers write only on change)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    type: str
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str
    observed_generation: int | None = None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    existing: Sequence[Mapping[str, Any]] | None, condition: Condition, now: str
) -> list[dict[str, Any]]:
    """`existing` with `condition` set: other types kept in order, a new type appended."""
    out: list[dict[str, Any]] = []
    found = False
    for item in existing or ():
        if item.get("type") != condition.type:
            out.append(dict(item))
            continue
        found = True
        same = item.get("status") == condition.status and item.get("lastTransitionTime")
        out.append(_render(condition, str(item["lastTransitionTime"]) if same else now))
    if not found:
        out.append(_render(condition, now))
    return out


def _render(condition: Condition, transition: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": condition.type,
        "status": condition.status,
        "lastTransitionTime": transition,
        "reason": condition.reason,
        "message": condition.message,
    }
    if condition.observed_generation is not None:
        doc["observedGeneration"] = condition.observed_generation
    return doc


def name_list(names: Sequence[str], limit: int = 20) -> str:
    """'a, b, c' or 'a, b, ... and 7 more': condition messages stay bounded on big clusters."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
