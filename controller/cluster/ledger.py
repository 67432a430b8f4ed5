"""Who holds which address: the watch's indexes with the controller's own writes laid over
them until the watch shows those writes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from controller.domain.ipam import IPAddress, LBService

Key = tuple[str, str]


class OverlayLedger:
    """controller.domain.ipam.Ledger over the indexes plus `overlay`, the Services as we wrote
    them (they replace what the indexes say of the same Service)."""

    def __init__(
        self,
        by_ip: Mapping[IPAddress, Collection[LBService]],
        by_share: Mapping[str, Collection[LBService]],
        overlay: Mapping[Key, LBService],
    ) -> None:
        self.by_ip = by_ip
        self.by_share = by_share
        self.overlay = overlay

    def holders(self, address: IPAddress) -> Sequence[LBService]:
        out = [s for s in self.by_ip.get(address, ()) if s.key not in self.overlay]
        out.extend(s for s in self.overlay.values() if address in s.assigned)
        return out

    def sharing(self, key: str) -> Sequence[LBService]:
        out = [s for s in self.by_share.get(key, ()) if s.key not in self.overlay]
        out.extend(s for s in self.overlay.values() if s.sharing_key == key)
        return out

    def held(self) -> dict[IPAddress, list[LBService]]:
        out: dict[IPAddress, list[LBService]] = {}
        for address, store in self.by_ip.items():
            holders = [s for s in store if s.key not in self.overlay]
            if holders:
                out[address] = holders
        for service in self.overlay.values():
            for address in service.assigned:
                out.setdefault(address, []).append(service)
        return out
