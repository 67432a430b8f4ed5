"""The runtime closes a connection the session gave up before its transport was up.

An accepted connection becomes a transport one event-loop turn later. If the session drops it
in between (a collision loser, a newer connection from the peer), the Close finds nothing to
close; the transport must then be closed when it comes up, with nothing sent on it. It used to
be kept and sent the OPEN of the accept: the peer sat in OpenConfirm on a connection nobody
read until its hold timer expired, and BIRD, a graceful-restart helper, then flushed every
route of ours (seen in the kill -9 tests under load; docs/hardening.md).
"""

from __future__ import annotations

import asyncio
import socket

from speaker.daemon import Speaker
from testing.routers.lab import loopback_address
from tests.speaker.session.test_daemon import _clean, peer, run, state


def test_a_connection_given_up_before_it_is_up_is_closed_with_nothing_sent() -> None:
    me, them = loopback_address(), loopback_address()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        speaker = Speaker()
        listener = socket.create_server((me, 0))
        clients: list[socket.socket] = []
        try:
            await speaker.apply(state(me, 65001, [_clean(peer("p", them, 65002, passive=True))],
                                      ["10.1.0.0/24"]))  # fmt: skip
            runner = speaker.runners["p"]
            accepted = []
            for _ in range(2):  # the peer connects twice, quickly
                client = socket.socket()
                client.bind((them, 0))
                client.connect(listener.getsockname())
                client.setblocking(False)
                clients.append(client)
                accepted.append(listener.accept()[0])
            # Both reach the runner in one loop turn: the second replaces the first (RFC 4271
            # §6.8 keeps one incoming connection), before the first one's transport is up.
            runner.accept(accepted[0])
            runner.accept(accepted[1])
            assert len(runner.session.connection_ids()) == 1
            first = await asyncio.wait_for(loop.sock_recv(clients[0], 4096), 10)
            assert first == b""  # closed, and not even our OPEN went out on it
            second = await asyncio.wait_for(loop.sock_recv(clients[1], 4096), 10)
            assert second[18] == 1  # the one kept got our OPEN (message type 1)
        finally:
            for client in clients:
                client.close()
            listener.close()
            await speaker.close()

    run(body)
