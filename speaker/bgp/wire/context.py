"""What the session negotiated that changes how bytes decode: passed in explicitly, never global."""

from __future__ import annotations

from dataclasses import dataclass

AFI_IPV4 = 1
AFI_IPV6 = 2
SAFI_UNICAST = 1
IPV4_UNICAST = (AFI_IPV4, SAFI_UNICAST)
IPV6_UNICAST = (AFI_IPV6, SAFI_UNICAST)

MAX_MESSAGE = 4096
MAX_EXTENDED_MESSAGE = 65535
AS_TRANS = 23456

Family = tuple[int, int]

FAMILY_NAMES: dict[str, Family] = {"ipv4-unicast": IPV4_UNICAST, "ipv6-unicast": IPV6_UNICAST}


def family_name(family: Family) -> str:
    for name, value in FAMILY_NAMES.items():
        if value == family:
            return name
    return f"afi{family[0]}-safi{family[1]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeContext:
    """Negotiated session parameters that change the wire format.

    four_octet_as: RFC 6793 capability negotiated both ways (AS_PATH carries 4-octet ASNs).
    add_path: families for which ADD-PATH (RFC 7911) receive (when decoding) or send (when
      encoding) was negotiated: their NLRI carry a 4-octet Path Identifier.
    extended_message: RFC 8654 negotiated: messages up to 65535 octets.
    ebgp: the peer is known to be external: LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST from it
      are discarded (RFC 7606 §7.5, §7.9, §7.10).
    """

    four_octet_as: bool = True
    add_path: frozenset[Family] = frozenset()
    extended_message: bool = False
    ebgp: bool = False

    @property
    def max_message(self) -> int:
        return MAX_EXTENDED_MESSAGE if self.extended_message else MAX_MESSAGE


DEFAULT_CONTEXT = DecodeContext()
