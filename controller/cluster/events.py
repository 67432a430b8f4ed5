"""The Events the cluster controller posts: what an allocation outcome or a pool status change
is worth telling, each distinct outcome once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.cluster.writes import Event, Involved
from controller.domain.ipam import Assignment, LBService, Pool
from controller.domain.objects import CRD_API_VERSION


class ServiceOutcomes:
    """The Events of each Service's allocation outcome: one per distinct outcome, not one per
    reconcile (a restarted process may repeat the last one once)."""

    def __init__(self) -> None:
        self._reported: dict[str, tuple[str, ...]] = {}  # uid (or ns/name) -> last outcome

    def forget(self, uid: str, key: tuple[str, str]) -> None:
        """The Service is gone."""
        self._reported.pop(uid or "/".join(key), None)

    def events(
        self, before: LBService, after: LBService, result: Assignment, pools: Sequence[Pool]
    ) -> list[Event]:
        """The Events to post now that `before` became `after` by `result`: none when it is
        the outcome already reported."""
        found: list[tuple[str, str, str]] = []
        if result.failure is not None:
            found.append(("Warning", "AllocationFailed", str(result.failure)))
        found.extend(("Warning", "AddressOutsidePool", w) for w in result.warnings)
        if after.assigned != before.assigned and after.assigned:
            by_name = sorted(pools, key=lambda p: p.name)
            where = ", ".join(
                f"{a} (pool {next((p.name for p in by_name if p.contains(a)), 'none')})"
                for a in after.assigned
            )
            found.append(("Normal", "IPAllocated", f"assigned {where}"))
        elif before.assigned and not after.assigned:
            gone = ", ".join(str(a) for a in before.assigned)
            found.append(("Normal", "IPReleased", f"released {gone}"))
        signature = tuple(f"{r}: {m}" for _, r, m in found if r != "IPReleased")
        key = before.uid or "/".join(before.key)
        if self._reported.get(key) == signature and after.assigned == before.assigned:
            return []
        self._reported[key] = signature
        involved = Involved(
            api_version="v1",
            kind="Service",
            namespace=before.ref.namespace,
            name=before.ref.name,
            uid=before.uid,
        )
        return [
            Event(involved=involved, type="Warning" if kind == "Warning" else "Normal",
                  reason=reason, message=message)
            for kind, reason, message in found
        ]  # fmt: skip


def pool_events(raw: Mapping[str, Any], status: Mapping[str, Any]) -> list[Event]:
    """PoolExhausted and AddressesOutsidePool, when the condition turns true by `status`."""
    before = {c["type"]: c for c in (raw.get("status") or {}).get("conditions") or ()}
    out: list[Event] = []
    for condition in status.get("conditions") or ():
        kind = condition["type"]
        if (
            kind in ("Exhausted", "AddressesOutsidePool")
            and condition["status"] == "True"
            and before.get(kind, {}).get("status") != "True"
        ):
            involved = Involved(
                api_version=CRD_API_VERSION,
                kind="LoadBalancerIPPool",
                name=raw["metadata"]["name"],
                uid=str(raw["metadata"].get("uid", "")),
            )
            reason = "PoolExhausted" if kind == "Exhausted" else kind
            message = condition["message"]
            out.append(Event(involved=involved, type="Warning", reason=reason, message=message))
    return out
