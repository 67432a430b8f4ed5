"""speaker.transport's socket options on real loopback sockets, without a BGP daemon."""

from __future__ import annotations

import asyncio
import socket

import pytest

from speaker.transport import (
    IP_MINTTL,
    IPV6_MINHOPCOUNT,
    Listener,
    SocketOptions,
    apply_options,
    connect,
)


async def _attempt(address: str, listener_key: str | None, key: str | None) -> bool:
    got: list[str] = []

    def accepted(sock: socket.socket, peer: str) -> None:
        got.append(peer)
        sock.close()

    listener = Listener(address, 0, wanted=lambda a: True, on_accept=accepted)
    listener.set_keys({address: listener_key} if listener_key is not None else {})
    listener.start()
    assert listener._sock is not None
    port = listener._sock.getsockname()[1]
    try:
        sock = await asyncio.wait_for(connect(address, port, SocketOptions(password=key)), 1.0)
    except TimeoutError:
        return False
    finally:
        listener.close()
    sock.close()
    return True


@pytest.mark.slow  # three 1 s connect timeouts per address
@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_md5_key_on_connect_and_listen(address: str) -> None:
    assert asyncio.run(_attempt(address, "k1", "k1"))
    assert not asyncio.run(_attempt(address, "k1", "k2"))  # wrong key: SYN dropped
    assert not asyncio.run(_attempt(address, "k1", None))  # unsigned SYN dropped
    assert not asyncio.run(_attempt(address, None, "k1"))  # signed SYN to a keyless listener
    assert asyncio.run(_attempt(address, None, None))


def test_listener_keys_are_replaced_and_deleted() -> None:
    async def run() -> tuple[bool, bool]:
        listener = Listener("127.0.0.1", 0, wanted=lambda a: True, on_accept=lambda s, a: s.close())
        listener.start()
        assert listener._sock is not None
        port = listener._sock.getsockname()[1]
        listener.set_keys({"127.0.0.1": "old"})
        listener.set_keys({"127.0.0.1": "new"})
        try:
            ok_new = True
            (
                await asyncio.wait_for(connect("127.0.0.1", port, SocketOptions(password="new")), 1)
            ).close()
        except TimeoutError:
            ok_new = False
        listener.set_keys({})
        try:
            ok_plain = True
            (await asyncio.wait_for(connect("127.0.0.1", port, SocketOptions()), 1)).close()
        except TimeoutError:
            ok_plain = False
        listener.close()
        return ok_new, ok_plain

    assert asyncio.run(run()) == (True, True)


def test_gtsm_and_ttl_options() -> None:
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        apply_options(v4, SocketOptions(ttl=255, min_ttl=254))
        apply_options(v6, SocketOptions(ttl=255, min_ttl=254))
        assert v4.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
        assert v4.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 254
        assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 255
        assert v6.getsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT) == 254
    finally:
        v4.close()
        v6.close()


def test_password_never_in_repr() -> None:
    assert "s3cret" not in repr(SocketOptions(password="s3cret"))
