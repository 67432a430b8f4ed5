"""A fault for the FIB writer's netlink socket: the kernel's answers to one batch are lost."""

from __future__ import annotations

import socket


class LosesOneAnswer:
    """The writer's socket, except that the answers to its `nth` send are lost (the receive
    right after it times out once): what a receive-buffer overrun or a timeout looks like. The
    kernel still did the work of that send."""

    def __init__(self, sock: socket.socket, nth: int) -> None:
        self.sock = sock
        self.sends = 0
        self.nth = nth
        self.fail_next_recv = False
        self.lost = 0  # answers lost so far

    def send(self, data: bytes) -> int:
        self.sends += 1
        self.fail_next_recv = self.sends == self.nth
        return self.sock.send(data)

    def recv_into(self, buf: bytearray) -> int:
        if self.fail_next_recv:
            self.fail_next_recv = False
            self.lost += 1
            raise TimeoutError("timed out")
        return self.sock.recv_into(buf)

    def close(self) -> None:
        self.sock.close()
