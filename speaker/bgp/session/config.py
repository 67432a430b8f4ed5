"""`SessionConfig`: what the session needs to know about one peer (every module of the session
reads it; the runtime builds it from the desired state in `speaker/session_inputs.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from speaker.bgp.wire.context import Family


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """One peer's session parameters. Identifiers are 32-bit ints; `local_asn` is the ASN this
    session speaks as (the peer's localAsn override, else the speaker's)."""

    local_asn: int
    peer_asn: int
    router_id: int
    families: frozenset[Family]
    hold_time: int = 90
    keepalive_time: int = 30
    connect_retry_time: float = 5.0
    passive: bool = False
    max_prefixes: int = 0
    extended_message: bool = True
    graceful_restart: bool = False
    restart_time: int = 120

    @property
    def ebgp(self) -> bool:
        return self.local_asn != self.peer_asn
