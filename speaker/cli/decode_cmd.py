"""`kubgp-speaker decode [FILE|-]`: print captured BGP messages as JSON, one object per line.

Input is hex (whitespace and colons allowed) or raw bytes. A malformed message prints the
NOTIFICATION this speaker would send (code, subcode, data) and the command exits 1. Input that
cannot be read (no such file, a directory) or is empty is a message on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import string
import sys
from typing import Any

from speaker.api.communities import community_text
from speaker.bgp.wire.attributes import (
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    AS_SET,
    As4PathAttribute,
    AsPathAttribute,
    Attribute,
    AttrType,
    CommunitiesAttribute,
    MpReachNlriAttribute,
    MpUnreachNlriAttribute,
    UnknownAttribute,
)
from speaker.bgp.wire.capabilities import CAPABILITIES, Capability, UnknownCapability
from speaker.bgp.wire.context import FAMILY_NAMES, DecodeContext, family_name
from speaker.bgp.wire.errors import BGPError, code_name, subcode_name
from speaker.bgp.wire.framing import Framer
from speaker.bgp.wire.messages import Message, Notification, Open, Update, decode_message
from speaker.bgp.wire.nlri import Prefix, prefix_to_str

_HEX = frozenset(string.hexdigits)
_SEGMENT_NAMES = {
    AS_SET: "AS_SET",
    AS_SEQUENCE: "AS_SEQUENCE",
    AS_CONFED_SEQUENCE: "AS_CONFED_SEQUENCE",
    AS_CONFED_SET: "AS_CONFED_SET",
}
EXIT_INPUT = 2


def parse_input(data: bytes) -> bytes:
    """Hex text (whitespace, colons, '0x' allowed) -> bytes; anything else is taken as raw."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data
    compact = "".join(text.replace(":", " ").replace("0x", " ").split())
    if compact and len(compact) % 2 == 0 and set(compact) <= _HEX:
        return bytes.fromhex(compact)
    return data


def _address(raw: bytes) -> str:
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    if len(raw) == 32:
        return f"{ipaddress.IPv6Address(raw[:16])},{ipaddress.IPv6Address(raw[16:])}"
    return raw.hex()


def _value(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return _address(value) if name in ("address", "next_hop") else value.hex()
    if isinstance(value, tuple):
        return [_value(name, v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def _fields(obj: Any) -> dict[str, Any]:
    return {_camel(f.name): _value(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _prefixes(prefixes: tuple[Prefix, ...], afi: int, ids: tuple[int, ...]) -> list[Any]:
    texts = [prefix_to_str(p, afi) for p in prefixes]
    if ids:
        return [{"pathId": i, "prefix": t} for i, t in zip(ids, texts, strict=True)]
    return list(texts)


def attribute_json(attr: Attribute) -> dict[str, Any]:
    try:
        name = AttrType(attr.type_code).name
    except ValueError:
        name = "UNKNOWN"
    out: dict[str, Any] = {"type": attr.type_code, "name": name, "flags": attr.flags}
    if isinstance(attr, MpReachNlriAttribute):
        out["family"] = family_name(attr.family)
        out["nextHop"] = _address(attr.next_hop)
        out["nlri"] = _prefixes(attr.nlri, attr.afi, attr.path_ids)
    elif isinstance(attr, MpUnreachNlriAttribute):
        out["family"] = family_name(attr.family)
        out["withdrawn"] = _prefixes(attr.withdrawn, attr.afi, attr.path_ids)
    elif isinstance(attr, CommunitiesAttribute):
        out["values"] = [community_text(v) for v in attr.values]
    elif isinstance(attr, UnknownAttribute):
        out["value"] = attr.value.hex()
    elif isinstance(attr, AsPathAttribute | As4PathAttribute):
        out["segments"] = [{"type": _SEGMENT_NAMES[t], "asns": list(a)} for t, a in attr.segments]
    else:
        out.update(_fields(attr))
    return out


def capability_json(cap: Capability) -> dict[str, Any]:
    cls = CAPABILITIES.get(cap.code)
    name = cls.__name__.removesuffix("Capability") if cls else "Unknown"
    out: dict[str, Any] = {"code": cap.code, "name": name}
    if isinstance(cap, UnknownCapability):
        out["value"] = cap.value.hex()
    else:
        out.update(_fields(cap))
    return out


def message_json(msg: Message) -> dict[str, Any]:
    if isinstance(msg, Open):
        return {
            "type": "OPEN",
            "version": msg.version,
            "myAs": msg.my_as,
            "asn": msg.asn,
            "holdTime": msg.hold_time,
            "bgpId": str(ipaddress.IPv4Address(msg.bgp_id)),
            "capabilities": [capability_json(c) for c in msg.capabilities],
        }
    if isinstance(msg, Update):
        out: dict[str, Any] = {
            "type": "UPDATE",
            "withdrawn": _prefixes(msg.withdrawn, 1, msg.withdrawn_path_ids),
            "attributes": [attribute_json(a) for a in msg.attributes],
            "nlri": _prefixes(msg.nlri, 1, msg.nlri_path_ids),
        }
        eor = msg.end_of_rib
        if eor is not None:
            out["endOfRib"] = family_name(eor)
        if msg.problems:
            out["problems"] = [
                {
                    "action": p.action.value,
                    "code": p.code,
                    "codeName": code_name(p.code),
                    "subcode": p.subcode,
                    "subcodeName": subcode_name(p.code, p.subcode),
                    "data": p.data.hex(),
                    "reason": p.reason,
                }
                for p in msg.problems
            ]
        return out
    if isinstance(msg, Notification):
        out = {
            "type": "NOTIFICATION",
            "code": msg.code,
            "codeName": code_name(msg.code),
            "subcode": msg.subcode,
            "subcodeName": subcode_name(msg.code, msg.subcode),
            "data": msg.data.hex(),
        }
        if msg.shutdown_message is not None:
            out["shutdownMessage"] = msg.shutdown_message
        return out
    out = {"type": type(msg).__name__.upper().replace("ROUTEREFRESH", "ROUTE-REFRESH")}
    out.update(_fields(msg))
    return out


def error_json(error: BGPError) -> dict[str, Any]:
    return {
        "type": "error",
        "action": error.action.value,
        "notification": {
            "code": error.code,
            "codeName": code_name(error.code),
            "subcode": error.subcode,
            "subcodeName": subcode_name(error.code, error.subcode),
            "data": error.data.hex(),
        },
        "reason": error.reason,
    }


def decode_stream(data: bytes, ctx: DecodeContext) -> tuple[list[dict[str, Any]], bool]:
    """(JSON objects, ok). Stops at a framing error; goes on after a bad message body."""
    framer = Framer(max_size=ctx.max_message)
    framer.feed(data)
    out: list[dict[str, Any]] = []
    ok = True
    while True:
        try:
            item = framer.next_message()
        except BGPError as exc:
            out.append(error_json(exc))
            return out, False
        if item is None:
            break
        try:
            msg = decode_message(item[0], item[1], ctx)
        except BGPError as exc:
            out.append(error_json(exc))
            ok = False
            continue
        if isinstance(msg, Update) and msg.problems:
            ok = False
        out.append(message_json(msg))
    if framer.buffered:
        out.append(
            {"type": "error", "reason": f"{framer.buffered} octets of an incomplete message"}
        )
        ok = False
    return out, ok


def _run(args: argparse.Namespace) -> int:
    name = "standard input" if args.file == "-" else args.file
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as fh:
                data = fh.read()
    except OSError as exc:
        print(f"kubgp-speaker decode: {name}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    if not data.strip():
        print(f"kubgp-speaker decode: {name} is empty: no message to decode", file=sys.stderr)
        return EXIT_INPUT
    ctx = DecodeContext(
        four_octet_as=not args.two_octet_as,
        add_path=frozenset(FAMILY_NAMES[f] for f in args.add_path),
        extended_message=args.extended_message,
        ebgp=args.ebgp,
    )
    objects, ok = decode_stream(parse_input(data), ctx)
    for obj in objects:
        print(json.dumps(obj, ensure_ascii=False))
    return 0 if ok else 1


def register(subparsers: Any) -> None:
    """Add the `decode` subcommand to `kubgp-speaker`."""
    parser = subparsers.add_parser(
        "decode",
        help="print BGP messages (hex or raw bytes) as JSON",
        description=__doc__,
    )
    parser.add_argument("file", nargs="?", default="-", help="input file, '-' for stdin")
    parser.add_argument(
        "--two-octet-as", action="store_true", help="4-octet AS was not negotiated (RFC 6793)"
    )
    parser.add_argument(
        "--add-path",
        action="append",
        default=[],
        choices=sorted(FAMILY_NAMES),
        metavar="FAMILY",
        help="ADD-PATH receive negotiated for FAMILY (ipv4-unicast, ipv6-unicast); repeatable",
    )
    parser.add_argument(
        "--extended-message", action="store_true", help="RFC 8654 negotiated (65535 octets)"
    )
    parser.add_argument(
        "--ebgp", action="store_true", help="external peer: discard iBGP-only attributes"
    )
    parser.set_defaults(handler=_run)


__all__ = ["decode_stream", "message_json", "parse_input", "register"]
