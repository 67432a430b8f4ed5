"""The lab: a set of real BGP daemons on loopback addresses, torn down whatever happens.

    def test_x(lab: Lab) -> None:
        a = lab.gobgp(asn=65001)
        b = lab.bird(asn=65002)
        lab.connect(a, b)          # or pass peers= yourself
        a.start(); b.start()
        a.wait_established(b.name)

Every daemon gets its own loopback address (127.x.y.z, unique within this test process) and
its own work dir under one temp dir that is removed at teardown, with the daemons ended by PID.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from testing.routers.bird import Bird
from testing.routers.daemon import RouterDaemon
from testing.routers.frr import FRR
from testing.routers.gobgp import GoBGP
from testing.routers.model import IPV4_UNICAST, PeerSpec

_LIVE: set[RouterDaemon] = set()


@atexit.register
def _end_stragglers() -> None:
    """Last resort if pytest itself is interrupted: end every daemon we started."""
    for daemon in list(_LIVE):
        with contextlib.suppress(Exception):
            daemon.close()


class LoopbackAddresses:
    """Hands out distinct 127.x.y.z addresses; x is derived from the PID so that two test runs
    on one machine (a developer's and CI's) do not collide."""

    def __init__(self) -> None:
        self._second_octet = 16 + os.getpid() % 200
        self._counter = itertools.count(1)

    def next(self) -> str:
        n = next(self._counter)
        third, fourth = divmod(n, 250)
        if third > 255:
            raise RuntimeError("lab ran out of loopback addresses")
        return f"127.{self._second_octet}.{third}.{fourth + 2}"


_ADDRESSES = LoopbackAddresses()


def loopback_address() -> str:
    return _ADDRESSES.next()


class Lab:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kubgp-lab-")) if root is None else root
        self.daemons: list[RouterDaemon] = []
        self._names = itertools.count(1)
        self._doc_hosts = itertools.count(1)

    def address(self) -> str:
        """A fresh loopback address for something the test runs itself (e.g. our speaker)."""
        return loopback_address()

    def _make(
        self,
        cls: type[RouterDaemon],
        *,
        asn: int,
        name: str | None,
        address: str | None,
        router_id: str | None,
        port: int,
        peers: Sequence[PeerSpec],
        netns: str | None,
    ) -> RouterDaemon:
        name = name or f"{cls.kind}{next(self._names)}"
        address = address or loopback_address()
        host = next(self._doc_hosts)
        daemon = cls(
            name=name,
            workdir=self.root / name,
            asn=asn,
            router_id=router_id or (address if ":" not in address else f"10.255.0.{host}"),
            address=address,
            port=port,
            peers=peers,
            netns=netns,
            export_next_hop4=f"192.0.2.{host}",
            export_next_hop6=f"2001:db8::{host:x}",
        )
        self.daemons.append(daemon)
        _LIVE.add(daemon)
        return daemon

    def bird(self, *, asn: int, name: str | None = None, address: str | None = None,
             router_id: str | None = None, port: int = 179, peers: Sequence[PeerSpec] = (),
             netns: str | None = None) -> Bird:  # fmt: skip
        daemon = self._make(Bird, asn=asn, name=name, address=address, router_id=router_id,
                            port=port, peers=peers, netns=netns)  # fmt: skip
        assert isinstance(daemon, Bird)
        return daemon

    def gobgp(self, *, asn: int, name: str | None = None, address: str | None = None,
              router_id: str | None = None, port: int = 179, peers: Sequence[PeerSpec] = (),
              netns: str | None = None) -> GoBGP:  # fmt: skip
        daemon = self._make(GoBGP, asn=asn, name=name, address=address, router_id=router_id,
                            port=port, peers=peers, netns=netns)  # fmt: skip
        assert isinstance(daemon, GoBGP)
        return daemon

    def frr(self, *, asn: int, name: str | None = None, address: str | None = None,
            router_id: str | None = None, port: int = 179, peers: Sequence[PeerSpec] = (),
            netns: str | None = None) -> FRR:  # fmt: skip
        daemon = self._make(FRR, asn=asn, name=name, address=address, router_id=router_id,
                            port=port, peers=peers, netns=netns)  # fmt: skip
        assert isinstance(daemon, FRR)
        return daemon

    def connect(
        self,
        a: RouterDaemon,
        b: RouterDaemon,
        *,
        families: tuple[str, ...] = (IPV4_UNICAST,),
        **options: object,
    ) -> None:
        """Configures a session between two lab daemons (both sides); call before start()."""
        a.peers[b.name] = PeerSpec(name=b.name, address=b.address, asn=b.asn, port=b.port,
                                   families=families, **options)  # type: ignore[arg-type]  # fmt: skip
        b.peers[a.name] = PeerSpec(name=a.name, address=a.address, asn=a.asn, port=a.port,
                                   families=families, **options)  # type: ignore[arg-type]  # fmt: skip

    def close(self) -> None:
        errors: list[str] = []
        for daemon in self.daemons:
            try:
                daemon.close()
            except Exception as exc:  # noqa: BLE001 - keep ending the others
                errors.append(f"{daemon.name}: {exc}")
            _LIVE.discard(daemon)
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise RuntimeError("lab teardown: " + "; ".join(errors))
