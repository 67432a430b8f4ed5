"""Route reflection at run time: the desired state's iBGP peers and cluster id configure a
`Reflector` (speaker/bgp/rib/reflection.py), which consumes the Loc-RIB's changes; what it
reflects goes to each peer's session (`Session.set_reflected`) through `deliver`.

    reflection = RouteReflection(deliver=lambda name, changes: ...)
    reflection.configure(state, rib)      # every applied state (after the Loc-RIB has it)
    route_service.add_consumer(reflection.changed)   # every Loc-RIB change, in order

`deliver(peer, changes)` is called synchronously, in the order the changes came; the daemon's
runs them through the peer's session, which sends only what its export view changes (our own
advertisement of a prefix wins over a reflected one). See docs/in-cluster-routing.md.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

from speaker.api.schema import DesiredState
from speaker.bgp.rib.reflection import (
    ExportChanges,
    ReflectionPeer,
    Reflector,
    RouteChange,
    SelectedRoutes,
)
from speaker.bgp.wire.context import FAMILY_NAMES
from speaker.session_inputs import local_asn

log = logging.getLogger("kubgp.speaker")

Deliver = Callable[[str, ExportChanges], None]


def reflection_peers(state: DesiredState) -> list[ReflectionPeer]:
    """The state's iBGP peers (the only ones reflection ever sends to), clients marked."""
    return [
        ReflectionPeer(
            name=p.name,
            client=p.route_reflector_client,
            families=frozenset(FAMILY_NAMES[f] for f in p.families),
        )
        for p in state.peers
        if local_asn(state, p) == p.asn
    ]


def cluster_id(state: DesiredState) -> int:
    """RFC 4456 CLUSTER_ID: `clusterId`, else the router id."""
    return int(ipaddress.IPv4Address(state.cluster_id or state.router_id))


class RouteReflection:
    """One speaker's route reflection (see the module doc)."""

    def __init__(self, *, deliver: Deliver) -> None:
        self._deliver = deliver
        self.reflector = Reflector(cluster_id=0)
        self._configured: tuple[tuple[ReflectionPeer, ...], int] | None = None

    @property
    def active(self) -> bool:
        return self.reflector.active

    def configure(self, state: DesiredState, rib: SelectedRoutes) -> None:
        """Apply the state's peers and cluster id; what changes for each peer is delivered.
        Nothing happens when neither changed."""
        peers = tuple(reflection_peers(state))
        wanted = (peers, cluster_id(state))
        if wanted == self._configured:
            return
        was_active = self.reflector.active
        self._configured = wanted
        self._send(self.reflector.configure(peers, wanted[1], rib))
        if self.reflector.active != was_active:
            clients = sorted(p.name for p in peers if p.client)
            if self.reflector.active:
                log.info("route reflector (cluster id %s) for %d clients: %s",
                         ipaddress.IPv4Address(wanted[1]), len(clients),
                         ", ".join(clients))  # fmt: skip
            else:
                log.info("no route reflector client any more: reflecting nothing")

    def changed(self, changes: Sequence[RouteChange]) -> None:
        """A Loc-RIB consumer: reflect what changed."""
        if changes:
            self._send(self.reflector.changed(changes))

    def _send(self, out: dict[str, ExportChanges]) -> None:
        for name, changes in out.items():
            self._deliver(name, changes)


__all__ = ["Deliver", "RouteReflection", "cluster_id", "reflection_peers"]
