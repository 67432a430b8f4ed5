"""The node agent's health: `/readyz` (it has synced) and `/livez` (its loops are alive), served
by controller.health_endpoint on the agent's own event loop (`--health-address`).

Ready means the agent has something true to tell: every watched kind was listed (kopf fed it
everything a LIST of every kind returned: controller.kube.node_watch), the first plan ran, and
the speaker acknowledged the state it produced — or that plan had no state to send (no valid
state for this node: nothing to wait for). Once ready, the agent stays ready: later push
failures are the speaker's (its own probes) or the `kubgp_agent_push_failures_total` alert's
business, and a pod that flaps unready in the middle of a rolling update only stalls the
update.

Live means the agent's event loop answers (the server runs on it, so a wedged loop fails the
probe by timing out) and its tasks have not ended.

`readiness()` is a pure function of what the agent knows; the reasons are values.
"""

from __future__ import annotations

import enum

from controller.health_endpoint import Health


class ReadyReason(enum.StrEnum):
    NotListed = "NotListed"  # the initial listings are not complete
    NotPlanned = "NotPlanned"  # listed, the first plan has not run yet
    NotAcked = "NotAcked"  # planned a state, the speaker has not acknowledged it yet
    Acked = "Acked"  # the speaker acknowledged a state of this process
    NothingToSend = "NothingToSend"  # the plan had no valid state for this node


class LiveReason(enum.StrEnum):
    Running = "Running"
    Stopped = "Stopped"  # the agent's tasks ended


def readiness(*, synced: bool, plans: int, offered: bool, acked: bool) -> Health:
    """`synced`: the whole cluster was listed; `plans`: plans run; `offered`: a plan produced
    a state for the speaker; `acked`: the speaker acknowledged a state of this process."""
    if not synced:
        return Health(False, ReadyReason.NotListed, "waiting for the initial listings")
    if plans == 0:
        return Health(False, ReadyReason.NotPlanned, "waiting for the first plan")
    if acked:
        return Health(True, ReadyReason.Acked, "the speaker runs this agent's state")
    if offered:
        return Health(False, ReadyReason.NotAcked, "waiting for the speaker to acknowledge")
    return Health(True, ReadyReason.NothingToSend, "no valid state for this node")
