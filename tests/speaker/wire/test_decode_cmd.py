"""`kubgp-speaker decode`: hex or raw bytes in, one JSON object per message out."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from speaker.cli.kubgp_speaker import main
from tests.speaker.wire.hexmsg import BASIC, msg, update


def _decode(
    data: bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path, *options: str
) -> tuple[int, list[dict[str, Any]]]:
    path = tmp_path / "capture"
    path.write_bytes(data)
    rc = main(["decode", str(path), *options])
    lines = capsys.readouterr().out.splitlines()
    return rc, [json.loads(line) for line in lines]


ANNOUNCE = msg(2, update(attrs_hex=BASIC + "c0 08 04 ffffff01", nlri_hex="18 0a0001").hex())


def test_hex_with_whitespace_and_colons(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = ANNOUNCE.hex(":") + "\n" + " ".join(msg(4).hex()[i : i + 2] for i in range(0, 38, 2))
    rc, out = _decode(text.encode(), capsys, tmp_path)
    assert rc == 0
    assert [o["type"] for o in out] == ["UPDATE", "KEEPALIVE"]
    assert out[0]["nlri"] == ["10.0.1.0/24"]
    names = [a["name"] for a in out[0]["attributes"]]
    assert names == ["ORIGIN", "AS_PATH", "NEXT_HOP", "COMMUNITIES"]
    assert out[0]["attributes"][2]["address"] == "192.0.2.1"
    assert out[0]["attributes"][3]["values"] == ["no-export"]
    assert out[0]["attributes"][1]["segments"] == [{"type": "AS_SEQUENCE", "asns": [64512]}]


def test_raw_bytes_from_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    opened = msg(1, "04 5ba0 005a c000020b 08 02 06 41 04 fa56ea00")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(opened + msg(2, "00000000"))))
    assert main(["decode", "-"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["type"] == "OPEN" and out[0]["asn"] == 4200000000 and out[0]["myAs"] == 23456
    assert out[0]["bgpId"] == "192.0.2.11"
    assert out[0]["capabilities"] == [{"code": 65, "name": "FourOctetAS", "asn": 4200000000}]
    assert out[1]["endOfRib"] == "ipv4-unicast"


def test_malformed_message_prints_the_notification_and_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, out = _decode(msg(1, "03 fc00 005a c000020b 00"), capsys, tmp_path)
    assert rc == 1
    assert out == [
        {
            "type": "error",
            "action": "session-reset",
            "notification": {
                "code": 2,
                "codeName": "OPENMessageError",
                "subcode": 1,
                "subcodeName": "UnsupportedVersionNumber",
                "data": "0004",
            },
            "reason": "version 3",
        }
    ]


def test_bad_header_stops_decoding(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out = _decode(b"\xff" * 16 + b"\x00\x05\x04" + msg(4), capsys, tmp_path)
    assert rc == 1 and len(out) == 1
    assert out[0]["notification"]["subcodeName"] == "BadMessageLength"
    assert out[0]["notification"]["data"] == "0005"


def test_treat_as_withdraw_is_shown_and_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = msg(
        2, update(attrs_hex=BASIC.replace("40 01 01 00", "40 01 01 09"), nlri_hex="18 0a0001").hex()
    )
    rc, out = _decode(bad, capsys, tmp_path)
    assert rc == 1
    assert out[0]["withdrawn"] == ["10.0.1.0/24"] and out[0]["nlri"] == []
    assert out[0]["problems"][0]["action"] == "treat-as-withdraw"
    assert out[0]["problems"][0]["subcodeName"] == "InvalidORIGINAttribute"


def test_context_options_change_decoding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    two_octet = msg(
        2,
        update(
            attrs_hex="40 01 01 00 40 02 04 02 01 fc00 40 03 04 c0000201", nlri_hex="18 0a0001"
        ).hex(),
    )
    rc, out = _decode(two_octet, capsys, tmp_path, "--two-octet-as")
    assert rc == 0 and out[0]["attributes"][1]["segments"][0]["asns"] == [64512]
    rc, out = _decode(two_octet, capsys, tmp_path)  # as 4-octet, the AS_PATH is malformed
    assert rc == 1 and out[0]["problems"][0]["subcodeName"] == "MalformedAS_PATH"
    add_path = msg(2, update(attrs_hex=BASIC, nlri_hex="00000005 18 0a0001").hex())
    rc, out = _decode(add_path, capsys, tmp_path, "--add-path", "ipv4-unicast")
    assert rc == 0 and out[0]["nlri"] == [{"pathId": 5, "prefix": "10.0.1.0/24"}]


def test_truncated_input_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out = _decode(msg(4)[:-3], capsys, tmp_path)
    assert rc == 1 and out[0]["type"] == "error"


def test_notification_and_route_refresh(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = msg(3, "06 02 03 627965") + msg(5, "0002 01 01")
    rc, out = _decode(data, capsys, tmp_path)
    assert rc == 0
    assert out[0]["codeName"] == "Cease" and out[0]["subcodeName"] == "AdministrativeShutdown"
    assert out[0]["shutdownMessage"] == "bye"
    assert out[1] == {"type": "ROUTE-REFRESH", "afi": 2, "safi": 1, "subtype": 1}
