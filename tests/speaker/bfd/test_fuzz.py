"""Property tests (h11's fuzz invariant, as for the BGP codec): any bytes decode to a Control
packet or raise BfdError, never anything else; every packet we can encode decodes to itself;
and the receive path (demux + session) takes any bytes from anyone without raising."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speaker.bfd.demux import Demux, Path
from speaker.bfd.packet import AuthSection, BfdError, ControlPacket, State, decode
from speaker.bfd.session import Session, StateChanged, Timers, Transmit

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u32 = st.integers(0, 0xFFFFFFFF)
packets = st.builds(
    ControlPacket,
    state=st.sampled_from(State),
    detect_mult=st.integers(1, 255),
    my_discriminator=st.integers(1, 0xFFFFFFFF),
    your_discriminator=st.integers(1, 0xFFFFFFFF),
    desired_min_tx=u32,
    required_min_rx=u32,
    required_min_echo_rx=u32,
    diagnostic=st.integers(0, 31),
    poll=st.booleans(),
    final=st.booleans(),
    control_plane_independent=st.booleans(),
    demand=st.booleans(),
    auth=st.none() | st.builds(AuthSection, type=st.integers(0, 255), data=st.binary(max_size=200)),
)


def _outcome(data: bytes) -> ControlPacket | BfdError:
    try:
        return decode(data)
    except BfdError as err:
        return err


@FUZZ
@given(st.binary(max_size=80))
def test_garbage_decodes_or_raises_bfd_error_only(data: bytes) -> None:
    result = _outcome(data)
    if isinstance(result, ControlPacket):
        # What decoded re-encodes to the bytes it came from (every field, flag and the auth
        # section); only Length may differ, when the sender's was larger than needed.
        wire = result.encode()
        assert wire[:3] + wire[4:] == data[:3] + data[4 : len(wire)]
        assert wire[3] <= data[3]


@FUZZ
@given(packets)
def test_encode_decode_round_trip(packet: ControlPacket) -> None:
    assert decode(packet.encode()) == packet


@FUZZ
@given(packets, st.integers(0, 60), st.integers(0, 255))
def test_mutated_packets_decode_or_raise_bfd_error_only(
    packet: ControlPacket, offset: int, value: int
) -> None:
    wire = bytearray(packet.encode())
    if offset < len(wire):
        wire[offset] = value
    _outcome(bytes(wire))


@FUZZ
@given(st.lists(st.binary(max_size=60) | packets.map(ControlPacket.encode), max_size=30),
       st.sampled_from(["192.0.2.2", "192.0.2.9"]), st.integers(0, 255))  # fmt: skip
def test_receive_path_never_raises(chunks: list[bytes], source: str, ttl: int) -> None:
    rng = random.Random(1).random
    demux: Demux[str] = Demux(rng)
    timers = Timers.from_ms(min_tx=50, min_rx=50, multiplier=3)
    session = Session(local_discriminator=demux.allocate_discriminator(), timers=timers, rng=rng)
    demux.add("tor", Path(local="192.0.2.1", remote="192.0.2.2", multihop=False), session)
    now = 0.0
    session.start(now)
    for data in chunks:
        now += 0.01
        key, events = demux.receive(data, source=source, destination="192.0.2.1",
                                    multihop=False, ttl=ttl, now=now)  # fmt: skip
        assert key in (None, "tor")
        assert all(isinstance(e, Transmit | StateChanged) for e in events)
        deadline = session.next_deadline()
        if deadline is not None and deadline <= now:
            session.handle_timer(now)
