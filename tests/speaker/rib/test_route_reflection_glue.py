"""speaker/route_reflection.py: the desired state's iBGP peers and cluster id configure the
reflector; Loc-RIB changes reach each peer's session through `deliver`."""

from __future__ import annotations

from speaker.api.schema import parse_desired_state
from speaker.bgp.rib.adj_rib_out import PathAttributes
from speaker.bgp.rib.received_attributes import cluster_list
from speaker.bgp.rib.reflection import ExportChanges
from speaker.route_reflection import RouteReflection, cluster_id, reflection_peers
from tests.speaker.rib.paths import rid
from tests.speaker.rib.test_reflection import V4, P, ibgp_path, new_rib

PEERS: list[dict[str, object]] = [
    {"name": "c1", "address": "192.0.2.1", "asn": 64512, "routeReflectorClient": True},
    {"name": "n1", "address": "192.0.2.3", "asn": 64512},
    {"name": "tor", "address": "192.0.2.9", "asn": 65000},
    {"name": "local-as", "address": "192.0.2.8", "asn": 64999, "localAsn": 64999},
]
DOC = {"routerId": "192.0.2.100", "asn": 64512, "clusterId": "192.0.2.250", "peers": PEERS}


def test_peers_and_cluster_id_from_the_state() -> None:
    state = parse_desired_state(DOC)
    peers = {p.name: p for p in reflection_peers(state)}
    assert sorted(peers) == ["c1", "local-as", "n1"]  # iBGP ones, by their local ASN
    assert peers["c1"].client and not peers["n1"].client
    assert cluster_id(state) == rid("192.0.2.250")
    plain = parse_desired_state({k: v for k, v in DOC.items() if k != "clusterId"})
    assert cluster_id(plain) == rid("192.0.2.100")


def test_configure_and_changes_are_delivered_per_peer() -> None:
    delivered: list[tuple[str, ExportChanges]] = []
    reflection = RouteReflection(deliver=lambda name, ch: delivered.append((name, ch)))
    rib = new_rib()
    state = parse_desired_state(DOC)
    reflection.configure(state, rib)
    assert delivered == []
    active = reflection.active
    assert active
    reflection.changed(rib.update("n1", [(V4, P, ibgp_path("192.0.2.3"))]))
    assert [name for name, _ in delivered] == ["c1"]  # a non-client's route: clients only
    attrs = delivered[0][1][V4][P]
    assert isinstance(attrs, PathAttributes) and cluster_list(attrs.attributes) == (
        rid("192.0.2.250"),
    )
    delivered.clear()
    reflection.configure(state, rib)  # the same state: nothing to do
    assert delivered == []
    no_clients = {**DOC, "peers": [{**p, "routeReflectorClient": False} for p in PEERS]}
    reflection.configure(parse_desired_state(no_clients), rib)
    assert delivered == [("c1", {V4: {P: None}})]
    assert not reflection.reflector.active
