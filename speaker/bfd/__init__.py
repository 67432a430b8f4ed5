"""Bidirectional Forwarding Detection (RFC 5880, 5881, 5882, 5883), sans-IO like the BGP core.

- `packet`: the Control packet codec; `decode` returns a `ControlPacket` or raises `BfdError`.
- `session`: one session's state machine and timers (`now` in, deadlines and bytes out).
- `demux`: which session a received packet belongs to; discriminators; TTL rules.
- `coupling`: what BFD Up/Down means for the peer's BGP session (RFC 5882).

Nothing here opens a socket, reads a clock or imports the rest of kubgp; the asyncio adapter
is `speaker.bfd_service`, the sockets are `speaker.bfd_transport`.
"""
