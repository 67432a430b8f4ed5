"""Records every byte real BIRD, GoBGP and FRR send to a BGP peer, for known-answer tests.

Run by hand (root, the lab's daemons installed), from the repository root:

    PYTHONPATH=. .venv/bin/python tests/data/bgp-captures/capture.py [bird] [gobgp] [frr]

For each daemon: a lab router (tests/lab) gets one neighbour, a plain TCP listener of ours on
another loopback address. The listener records the daemon's byte stream unchanged, split into
messages by the length field of each header, and answers just enough for the session to come up:
our OPEN and KEEPALIVEs, built with speaker.bgp. The script then makes the daemon send what the
known-answer tests (tests/speaker/wire/test_captured.py) check: its OPEN, KEEPALIVE, UPDATEs for the
routes below, End-of-RIB for IPv4 and IPv6, a withdrawal in each family, and the NOTIFICATION it
sends when it is stopped (SIGTERM). Writes <daemon>.hex next to this file: one message per line,
each after a comment line naming it. The values configured here are repeated in the tests as
the known answers; change both together.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from speaker.api.communities import community_text
from speaker.bgp.wire.attributes import (
    CommunitiesAttribute,
    LargeCommunitiesAttribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    MultiExitDiscAttribute,
    NextHopAttribute,
)
from speaker.bgp.wire.capabilities import (
    GracefulRestartCapability,
    MultiprotocolCapability,
    RouteRefreshCapability,
)
from speaker.bgp.wire.context import AFI_IPV4, AFI_IPV6, family_name
from speaker.bgp.wire.errors import BGPError, CeaseSubcode, ErrorCode
from speaker.bgp.wire.framing import HEADER_LEN
from speaker.bgp.wire.messages import Keepalive, Message, Notification, Open, Update, decode_all
from speaker.bgp.wire.nlri import Prefix
from testing.routers.daemon import RouterDaemon
from testing.routers.frr import FRR
from testing.routers.lab import Lab
from testing.routers.model import IPV4_UNICAST, IPV6_UNICAST, PeerSpec

HERE = Path(__file__).resolve().parent
VERSIONS = {"bird": "BIRD 2.0.12", "gobgp": "GoBGP 3.10.0", "frr": "FRR 8.4.4 (bgpd)"}

# The daemon's side (4-octet AS: its OPEN carries AS_TRANS, its AS_PATH 4-octet ASNs).
DAEMON_ASN = 4200000001
DAEMON_ROUTER_ID = "198.51.100.1"
HOLD_TIME = 90
RESTART_TIME = 120
# Our side: the listener that records.
CAPTURE_ASN = 65000
CAPTURE_ROUTER_ID = "198.51.100.2"
CAPTURE_PORT = 1179
KEEPALIVE_EVERY = 10.0

NEXT_HOP4 = "192.0.2.10"
NEXT_HOP6 = "2001:db8::10"
# prefix -> (communities, large communities, MED); all originated before the session comes up.
ROUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...], int | None]] = {
    "10.1.0.0/24": (("65001:100", "65001:7"), ("4200000001:1:2",), 42),
    "10.1.1.0/24": ((), (), None),
    "10.1.2.0/24": ((), (), None),
    "2001:db8:1::/48": (("65001:6",), ("4200000001:6:6",), 6),
    "2001:db8:2::/48": ((), (), None),
}
# Withdrawn once both End-of-RIBs have arrived.
WITHDRAWN = ("10.1.2.0/24", "2001:db8:2::/48")
SHUTDOWN_MESSAGE = "kubgp capture: planned maintenance"
TIMEOUT = 90.0  # FRR's traditional defaults hold eBGP updates for an MRAI of up to 30 s


def split_messages(stream: bytes) -> tuple[list[bytes], bytes]:
    """Whole messages by their header's length field, and the incomplete rest. No checks: the
    recording must not depend on the codec under test."""
    messages = []
    at = 0
    while len(stream) - at >= HEADER_LEN:
        length = int.from_bytes(stream[at + 16 : at + 18], "big")
        if length < HEADER_LEN or len(stream) - at < length:
            break
        messages.append(stream[at : at + length])
        at += length
    return messages, stream[at:]


def our_open() -> bytes:
    return Open.create(
        asn=CAPTURE_ASN,
        hold_time=HOLD_TIME,
        bgp_id=int(ipaddress.IPv4Address(CAPTURE_ROUTER_ID)),
        capabilities=(
            MultiprotocolCapability(AFI_IPV4, 1),
            MultiprotocolCapability(AFI_IPV6, 1),
            RouteRefreshCapability(),
            # Graceful restart (receiving speaker): BIRD sends End-of-RIB only to a peer with it.
            GracefulRestartCapability(
                restart_time=RESTART_TIME, families=((AFI_IPV4, 1, 0), (AFI_IPV6, 1, 0))
            ),
        ),
    ).encode()


class Recorder:
    """A passive BGP peer that records what it receives and answers OPEN + KEEPALIVEs."""

    def __init__(self, address: str, port: int) -> None:
        self.server = socket.create_server((address, port))
        self.messages: list[bytes] = []
        self.closed = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.settimeout(TIMEOUT)
            conn, _ = self.server.accept()
            with conn:
                self._serve(conn)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
        finally:
            self.server.close()
            with self.changed:
                self.closed = True
                self.changed.notify_all()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        pending = b""
        opened = False
        next_keepalive = 0.0
        while True:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                return
            if data:
                messages, pending = split_messages(pending + data)
                for message in messages:
                    if message[18] == 1 and not opened:  # OPEN: answer with ours
                        conn.sendall(our_open() + Keepalive().encode())
                        opened = True
                        next_keepalive = time.monotonic() + KEEPALIVE_EVERY
                with self.changed:
                    self.messages.extend(messages)
                    self.changed.notify_all()
            if opened and time.monotonic() >= next_keepalive:
                conn.sendall(Keepalive().encode())
                next_keepalive = time.monotonic() + KEEPALIVE_EVERY

    def wait(self, what: str, done: Callable[[list[Message]], bool]) -> None:
        """Waits until the messages received so far, decoded, satisfy `done`."""
        deadline = time.monotonic() + TIMEOUT
        with self.changed:
            while not done(decode_all(b"".join(self.messages))):
                if self.closed:
                    raise RuntimeError(f"connection closed waiting for {what}: {self.error}")
                if not self.changed.wait(timeout=deadline - time.monotonic()):
                    raise TimeoutError(f"timed out waiting for {what}")

    def wait_closed(self) -> None:
        self.thread.join(TIMEOUT)
        if self.thread.is_alive():
            raise TimeoutError("the daemon did not close the connection")


def _prefixes(message: Update) -> tuple[set[str], set[str]]:
    """(announced, withdrawn) prefixes of an UPDATE as text, both families."""

    def text(afi: int, prefixes: tuple[Prefix, ...]) -> set[str]:
        width = 4 if afi == AFI_IPV4 else 16
        return {str(ipaddress.ip_network((p[1:].ljust(width, b"\0"), p[0]))) for p in prefixes}

    announced = text(AFI_IPV4, message.nlri)
    withdrawn = text(AFI_IPV4, message.withdrawn)
    if (reach := message.mp_reach) is not None:
        announced |= text(reach.afi, reach.nlri)
    if (unreach := message.mp_unreach) is not None:
        withdrawn |= text(unreach.afi, unreach.withdrawn)
    return announced, withdrawn


def _seen(messages: list[Message]) -> tuple[set[str], set[str], set[str]]:
    announced: set[str] = set()
    withdrawn: set[str] = set()
    eors: set[str] = set()
    for message in messages:
        if isinstance(message, Update):
            if (family := message.end_of_rib) is not None:
                eors.add(family_name(family))
            a, w = _prefixes(message)
            announced |= a
            withdrawn |= w
    return announced, withdrawn, eors


def _name(codes: type[enum.IntEnum], value: int) -> str:
    try:
        return codes(value).name
    except ValueError:
        return str(value)


def describe(message: Message) -> str:
    """A one-line label for the .hex file (the tests check the values, not this text)."""
    if isinstance(message, Open):
        caps = ", ".join(type(c).__name__.removesuffix("Capability") for c in message.capabilities)
        return (
            f"OPEN my_as={message.my_as} asn={message.asn} hold={message.hold_time} "
            f"id={ipaddress.IPv4Address(message.bgp_id)} capabilities: {caps}"
        )
    if isinstance(message, Update):
        if (family := message.end_of_rib) is not None:
            return f"UPDATE End-of-RIB {family_name(family)}"
        announced, withdrawn = _prefixes(message)
        parts = []
        if announced:
            parts.append("announce " + " ".join(sorted(announced)))
        if withdrawn:
            parts.append("withdraw " + " ".join(sorted(withdrawn)))
        for attr in message.attributes:
            if isinstance(attr, NextHopAttribute):
                parts.append(f"next hop {ipaddress.IPv4Address(attr.address)}")
            elif isinstance(attr, MpReachNlriAttribute):
                parts.append(f"next hop {ipaddress.IPv6Address(attr.next_hop_global)}")
            elif isinstance(attr, CommunitiesAttribute):
                parts.append("communities " + " ".join(map(community_text, attr.values)))
            elif isinstance(attr, LargeCommunitiesAttribute):
                parts.append("large " + " ".join("{}:{}:{}".format(*v) for v in attr.values))
            elif isinstance(attr, MultiExitDiscAttribute):
                parts.append(f"MED {attr.value}")
            elif isinstance(attr, MpUnreachNlriAttribute) and not attr.withdrawn:
                parts.append("empty MP_UNREACH_NLRI")
        return "UPDATE " + ", ".join(parts)
    if isinstance(message, Notification):
        code = _name(ErrorCode, message.code)
        sub = _name(CeaseSubcode, message.subcode) if message.code == 6 else message.subcode
        text = f" {message.shutdown_message!r}" if message.shutdown_message else ""
        return f"NOTIFICATION {code}/{sub} data={message.data.hex() or '-'}{text}"
    return type(message).__name__.upper()


def _peer_spec(listener: str) -> PeerSpec:
    return PeerSpec(
        name="capture",
        address=listener,
        asn=CAPTURE_ASN,
        port=CAPTURE_PORT,
        hold_time=HOLD_TIME,
        graceful_restart=True,
        restart_time=RESTART_TIME,
        families=(IPV4_UNICAST, IPV6_UNICAST),
    )


def capture(kind: str) -> list[bytes]:
    lab = Lab()
    try:
        listener = lab.address()
        recorder = Recorder(listener, CAPTURE_PORT)
        makers: dict[str, Callable[..., RouterDaemon]] = {
            "bird": lab.bird,
            "gobgp": lab.gobgp,
            "frr": lab.frr,
        }
        daemon = makers[kind](asn=DAEMON_ASN, name=kind, router_id=DAEMON_ROUTER_ID)
        daemon.peers["capture"] = _peer_spec(listener)
        for prefix, (communities, large, med) in ROUTES.items():
            daemon.originate(
                prefix,
                next_hop=NEXT_HOP6 if ":" in prefix else NEXT_HOP4,
                communities=communities,
                large_communities=large,
                med=med,
            )
        # The daemon connects as soon as it runs; its OPEN waits in our socket until it has
        # every route, so its first UPDATEs carry them all.
        daemon.start()
        time.sleep(2)
        recorder.start()

        def initial_feed(messages: list[Message]) -> bool:
            announced, _, eors = _seen(messages)
            return announced >= set(ROUTES) and eors >= {IPV4_UNICAST, IPV6_UNICAST}

        recorder.wait("every route and both End-of-RIBs", initial_feed)
        for prefix in WITHDRAWN:
            daemon.withdraw(prefix)
        recorder.wait("the withdrawals", lambda m: _seen(m)[1] >= set(WITHDRAWN))
        if isinstance(daemon, FRR):
            # With graceful restart on, FRR 8.4 closes the connection without a NOTIFICATION
            # when it is stopped (it may be restarting); an administrative shutdown of the
            # neighbour sends Cease with an RFC 8203 shutdown communication instead.
            daemon.vtysh(
                "configure terminal",
                f"router bgp {DAEMON_ASN}",
                f"neighbor {listener} shutdown message {SHUTDOWN_MESSAGE}",
            )
            recorder.wait_closed()
        daemon.stop()
        recorder.wait_closed()
        return recorder.messages
    finally:
        lab.close()


def write(kind: str, messages: list[bytes]) -> Path:
    lines = [
        f"# {VERSIONS[kind]} (Debian 12), captured {time.strftime('%Y-%m-%d')} by capture.py:",
        "# every message it sent to the capture peer, in order; see README.md.",
    ]
    for n, raw in enumerate(messages, 1):
        try:
            (decoded,) = decode_all(raw)
            label = describe(decoded)
        except BGPError as exc:
            label = f"does not decode: {exc}"
        lines += [f"# {n}: {label}", raw.hex()]
    path = HERE / f"{kind}.hex"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str]) -> int:
    kinds = argv or ["bird", "gobgp", "frr"]
    for kind in kinds:
        path = write(kind, capture(kind))
        print(f"{kind}: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
