"""LoadBalancer IPAM: which addresses a LoadBalancer Service gets, as a pure function.

No Kubernetes I/O here. The used set is whatever Services' `status.loadBalancer.ingress[].ip`
say (a `Ledger` answers "who holds this address"), so a restarted controller, or a second one
active for a moment, derives the same state from the cluster. `assign(service, pools, ledger)`
is deterministic: the same Service, pools and ledger always give the same `Assignment`, and a
Service whose status already satisfies its request keeps it (restart-stable). Why a Service gets
nothing is a `Failure` value, never only a log line.

The allocation rules are tabled in docs/cluster-controller.md.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, Protocol

from controller.domain.conditions import Condition, name_list, set_condition
from controller.domain.objects import (
    ANNOTATION_LB_IPS,
    LOAD_BALANCER_CLASS,
    InvalidObjectError,
    LabelSelector,
    LoadBalancerIPPool,
    parse_load_balancer_ip_pool,
)
from controller.domain.reasons import ObjectRef
from speaker.api.schema import FAMILY_IPV4, FAMILY_IPV6, family_of

ANNOTATION_IP_POOL: Final = "kubgp.io/ip-pool"
ANNOTATION_SHARED_IP: Final = "kubgp.io/allow-shared-ip"

IPV4: Final = "IPv4"
IPV6: Final = "IPv6"
FAMILIES: Final = (IPV4, IPV6)
# Each unicast family (speaker.api.schema.family_of) as a Service's spec.ipFamilies spells it.
IP_FAMILY: Final = {FAMILY_IPV4: IPV4, FAMILY_IPV6: IPV6}
INT64_MAX: Final = 2**63 - 1  # status counts are int64; an IPv6 /64 holds more

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_buggy(address: IPAddress) -> bool:
    """An IPv4 address ending in .0 or .255, which some old clients and CPEs mishandle."""
    return address.version == 4 and int(address) & 0xFF in (0, 0xFF)


class FailureReason(StrEnum):
    InvalidRequest = "InvalidRequest"  # malformed annotation, families that cannot be met
    PoolNotFound = "PoolNotFound"  # kubgp.io/ip-pool names a pool that does not exist
    PoolNotSelecting = "PoolNotSelecting"  # a named or containing pool does not select it
    NoMatchingPool = "NoMatchingPool"  # no pool for this family selects the Service
    NotInAnyPool = "NotInAnyPool"  # a requested address is in no pool
    AddressInUse = "AddressInUse"  # a requested address is held and sharing is refused
    PoolExhausted = "PoolExhausted"  # every candidate pool is full


@dataclass(frozen=True, slots=True)
class Failure:
    reason: FailureReason
    message: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"


# --- pools ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """An inclusive range of addresses of one family, as integers."""

    version: int
    first: int
    last: int

    def address(self, value: int) -> IPAddress:
        if self.version == 4:
            return ipaddress.IPv4Address(value)
        return ipaddress.IPv6Address(value)

    def contains(self, address: IPAddress) -> bool:
        return address.version == self.version and self.first <= int(address) <= self.last

    def size(self, *, avoid_buggy: bool) -> int:
        n = self.last - self.first + 1
        if avoid_buggy and self.version == 4:
            n -= _count_low_byte(self.first, self.last, 0) + _count_low_byte(
                self.first, self.last, 0xFF
            )
        return n


def _count_low_byte(first: int, last: int, low: int) -> int:
    """How many x in [first, last] have x % 256 == low."""

    def upto(n: int) -> int:  # in [0, n]
        return 0 if n < low else (n - low) // 256 + 1

    return upto(last) - upto(first - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    name: str
    blocks: tuple[Block, ...]  # sorted: IPv4 first, then by first address
    service_selector: LabelSelector
    namespaces: frozenset[str]
    auto_assign: bool
    avoid_buggy_ips: bool

    @classmethod
    def from_view(cls, view: LoadBalancerIPPool) -> Pool:
        blocks: list[Block] = []
        for cidr in view.cidrs:
            net = ipaddress.ip_network(cidr)
            blocks.append(Block(net.version, int(net.network_address), int(net.broadcast_address)))
        for start, end in view.ranges:
            a, b = ipaddress.ip_address(start), ipaddress.ip_address(end)
            blocks.append(Block(a.version, int(a), int(b)))
        return cls(
            name=view.ref.name,
            blocks=tuple(sorted(set(blocks), key=lambda b: (b.version, b.first, b.last))),
            service_selector=view.service_selector,
            namespaces=view.namespaces,
            auto_assign=view.auto_assign,
            avoid_buggy_ips=view.avoid_buggy_ips,
        )

    def contains(self, address: IPAddress) -> bool:
        return any(b.contains(address) for b in self.blocks)

    def has_family(self, family: str) -> bool:
        version = 4 if family == IPV4 else 6
        return any(b.version == version for b in self.blocks)

    def selects(self, service: LBService) -> bool:
        if self.namespaces and service.ref.namespace not in self.namespaces:
            return False
        return self.service_selector.matches(service.labels)

    def allocatable(self, address: IPAddress) -> bool:
        """In the pool and not avoided: what automatic allocation may hand out."""
        return self.contains(address) and not (self.avoid_buggy_ips and is_buggy(address))

    def candidates(self, family: str) -> Iterator[IPAddress]:
        """Every allocatable address of a family in ascending order (lazily: pools are big)."""
        version = 4 if family == IPV4 else 6
        seen_upto = -1  # blocks may overlap
        for block in self.blocks:
            if block.version != version:
                continue
            start = max(block.first, seen_upto + 1)
            for value in range(start, block.last + 1):
                address = block.address(value)
                if not (self.avoid_buggy_ips and is_buggy(address)):
                    yield address
            seen_upto = max(seen_upto, block.last)

    def total(self) -> int:
        """Allocatable addresses (overlapping blocks counted once)."""
        total, merged = 0, _merged(self.blocks)
        for block in merged:
            total += block.size(avoid_buggy=self.avoid_buggy_ips)
        return total


def _merged(blocks: Iterable[Block]) -> list[Block]:
    out: list[Block] = []
    for b in sorted(blocks, key=lambda b: (b.version, b.first)):
        if out and out[-1].version == b.version and b.first <= out[-1].last + 1:
            last = out[-1]
            out[-1] = Block(last.version, last.first, max(last.last, b.last))
        else:
            out.append(b)
    return out


# --- Services -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LBService:
    """What IPAM needs of a Service. Parsed leniently: a Service whose spec IPAM cannot use
    still holds the addresses its status names (`problem` says what is wrong with its request);
    dropping them from the used set would hand them out twice."""

    ref: ObjectRef
    uid: str
    resource_version: str
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text)
    labels: Mapping[str, str]
    type: str
    load_balancer_class: str | None
    deleting: bool
    families: tuple[str, ...]  # in ipFamilies order
    require_all_families: bool  # False for ipFamilyPolicy PreferDualStack
    requested: tuple[IPAddress, ...]  # at most one per family
    pools: tuple[str, ...]  # kubgp.io/ip-pool, in the order given
    sharing_key: str | None
    ports: frozenset[tuple[str, int]]  # (protocol, port)
    assigned: tuple[IPAddress, ...]  # status.loadBalancer.ingress[].ip, in order
    problem: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.ref.namespace, self.ref.name)

    @property
    def ours(self) -> bool:
        """A LoadBalancer class we serve (whatever the type: we clean up after a type change)."""
        return self.load_balancer_class in (None, LOAD_BALANCER_CLASS)

    @property
    def wants_addresses(self) -> bool:
        return self.ours and self.type == "LoadBalancer" and not self.deleting


def _ip(text: object) -> IPAddress | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _get(raw: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def parse_lb_service(raw: Mapping[str, object]) -> LBService:
    """The IPAM view of a raw Service; never raises on a bad spec (see `LBService`)."""
    meta, spec, status = _get(raw, "metadata"), _get(raw, "spec"), _get(raw, "status")
    ref = ObjectRef("Service", str(meta.get("namespace") or "default"), str(meta.get("name")))
    labels, annotations = _str_map(meta.get("labels")), _str_map(meta.get("annotations"))
    assigned: list[IPAddress] = []
    ingress = _get(status, "loadBalancer").get("ingress")
    for item in ingress if isinstance(ingress, list) else ():
        ip = _ip(item.get("ip")) if isinstance(item, Mapping) else None
        if ip is not None and ip not in assigned:
            assigned.append(ip)
    problems: list[str] = []

    requested: list[IPAddress] = []
    texts: list[str] = []
    if ANNOTATION_LB_IPS in annotations:
        texts = [t.strip() for t in annotations[ANNOTATION_LB_IPS].split(",") if t.strip()]
    spec_ip = spec.get("loadBalancerIP")
    if isinstance(spec_ip, str) and spec_ip:
        if texts and _ip(spec_ip) not in [_ip(t) for t in texts]:
            problems.append(
                f"spec.loadBalancerIP {spec_ip} is not among the {ANNOTATION_LB_IPS} annotation's"
                " addresses; set one or make them agree"
            )
        elif not texts:
            texts = [spec_ip]
    for text in texts:
        ip = _ip(text)
        if ip is None:
            problems.append(f"{text!r} is not an IP address")
        elif any(r.version == ip.version for r in requested):
            problems.append(f"more than one {IP_FAMILY[family_of(ip)]} address requested")
        else:
            requested.append(ip)

    families: list[str] = []
    raw_families = spec.get("ipFamilies")
    if isinstance(raw_families, list) and raw_families:
        for fam in raw_families:
            if fam not in FAMILIES:
                problems.append(f"spec.ipFamilies: unknown family {fam!r}")
            elif fam not in families:
                families.append(str(fam))
    else:
        cluster_ips = spec.get("clusterIPs")
        texts_ = cluster_ips if isinstance(cluster_ips, list) else [spec.get("clusterIP")]
        for item in texts_:
            ip = _ip(item)
            if ip is not None and IP_FAMILY[family_of(ip)] not in families:
                families.append(IP_FAMILY[family_of(ip)])
        if not families:
            families = list(dict.fromkeys(IP_FAMILY[family_of(ip)] for ip in requested)) or [IPV4]
    for ip in requested:
        family = IP_FAMILY[family_of(ip)]
        if family not in families:
            problems.append(
                f"{ip} is {family} but the Service's ipFamilies are {', '.join(families)}"
            )

    ports: set[tuple[str, int]] = set()
    raw_ports = spec.get("ports")
    for port in raw_ports if isinstance(raw_ports, list) else ():
        number = port.get("port") if isinstance(port, Mapping) else None
        if isinstance(number, int):
            ports.add((str(port.get("protocol") or "TCP"), number))

    pools = tuple(
        p.strip() for p in annotations.get(ANNOTATION_IP_POOL, "").split(",") if p.strip()
    )
    lb_class = spec.get("loadBalancerClass")
    return LBService(
        ref=ref,
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        labels=labels,
        type=str(spec.get("type") or "ClusterIP"),
        load_balancer_class=lb_class if isinstance(lb_class, str) and lb_class else None,
        deleting=bool(meta.get("deletionTimestamp")),
        families=tuple(families),
        require_all_families=spec.get("ipFamilyPolicy") != "PreferDualStack",
        requested=tuple(requested),
        pools=pools,
        sharing_key=annotations.get(ANNOTATION_SHARED_IP) or None,
        ports=frozenset(ports),
        assigned=tuple(assigned),
        problem="; ".join(problems) or None,
    )


def can_share(a: LBService, b: LBService) -> bool:
    """Two Services may hold one address: same non-empty sharing key, no common port."""
    return (
        a.sharing_key is not None and a.sharing_key == b.sharing_key and a.ports.isdisjoint(b.ports)
    )


def _refusal(service: LBService, holder: LBService, address: IPAddress) -> str:
    why = "it does not allow sharing"
    if service.sharing_key is None or holder.sharing_key is None:
        why = f"both need the same {ANNOTATION_SHARED_IP} annotation"
    elif service.sharing_key != holder.sharing_key:
        why = f"their {ANNOTATION_SHARED_IP} keys differ"
    else:
        common = sorted(service.ports & holder.ports)
        why = "ports overlap: " + ", ".join(f"{port}/{proto}" for proto, port in common)
    return f"{address} is in use by Service {holder.ref.namespace}/{holder.ref.name} ({why})"


def _rank(service: LBService, address: IPAddress) -> tuple[bool, str, str, str]:
    """Who keeps an address two Services hold without sharing (only after a dual-active
    window or a hand edit): whoever asked for it, then the older, then by name."""
    return (address not in service.requested, service.created, *service.key)


# --- the ledger: who holds what ---------------------------------------------------------------


class Ledger(Protocol):
    def holders(self, address: IPAddress) -> Sequence[LBService]:
        """Every Service whose status holds the address."""

    def sharing(self, key: str) -> Sequence[LBService]:
        """Every Service with this kubgp.io/allow-shared-ip key."""


@dataclass
class MemoryLedger:
    """A Ledger over a dict of Services (tests, and `allocate_all`)."""

    services: dict[tuple[str, str], LBService] = field(default_factory=dict)
    _by_ip: dict[IPAddress, dict[tuple[str, str], LBService]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    _by_key: dict[str, dict[tuple[str, str], LBService]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def __post_init__(self) -> None:
        services, self.services = self.services, {}
        for service in services.values():
            self.put(service)

    def put(self, service: LBService) -> None:
        self.remove(service.key)
        self.services[service.key] = service
        for ip in service.assigned:
            self._by_ip[ip][service.key] = service
        if service.sharing_key is not None:
            self._by_key[service.sharing_key][service.key] = service

    def remove(self, key: tuple[str, str]) -> None:
        old = self.services.pop(key, None)
        if old is None:
            return
        for ip in old.assigned:
            self._by_ip[ip].pop(key, None)
            if not self._by_ip[ip]:
                del self._by_ip[ip]
        if old.sharing_key is not None:
            self._by_key[old.sharing_key].pop(key, None)

    def holders(self, address: IPAddress) -> Sequence[LBService]:
        return tuple(self._by_ip.get(address, {}).values())

    def sharing(self, key: str) -> Sequence[LBService]:
        return tuple(self._by_key.get(key, {}).values())

    def addresses(self) -> Iterable[IPAddress]:
        return self._by_ip.keys()


# --- assignment -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """What a Service's status should say, and why it says less than asked.

    `addresses` is the complete desired `status.loadBalancer.ingress` (IPs, in ipFamilies
    order); `failure` is set when a request could not be met (the Service then has the
    addresses it could get: none, or with PreferDualStack the families that worked);
    `warnings` are kept-but-questionable states (an address outside every pool)."""

    addresses: tuple[IPAddress, ...]
    failure: Failure | None = None
    warnings: tuple[str, ...] = ()

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(str(a) for a in self.addresses)


def assign(service: LBService, pools: Sequence[Pool], ledger: Ledger) -> Assignment | None:
    """The addresses `service` should hold. None: not ours to touch (another class)."""
    if not service.ours:
        return None
    if service.deleting:  # keeps what it holds until it is gone: nobody reuses it meanwhile
        return Assignment(service.assigned)
    if not service.wants_addresses:
        return Assignment(())
    if service.problem is not None:
        return Assignment((), Failure(FailureReason.InvalidRequest, service.problem))
    ordered = sorted(pools, key=lambda p: p.name)
    named: list[Pool] = []
    for name in service.pools:
        pool = next((p for p in ordered if p.name == name), None)
        if pool is None:
            return Assignment(
                (),
                Failure(
                    FailureReason.PoolNotFound,
                    f"{ANNOTATION_IP_POOL} names LoadBalancerIPPool {name!r}, which does not exist",
                ),
            )
        if not pool.selects(service):
            return Assignment(
                (),
                Failure(
                    FailureReason.PoolNotSelecting,
                    f"LoadBalancerIPPool {name} does not select this Service"
                    " (its serviceSelector or namespaces)",
                ),
            )
        named.append(pool)
    ctx = _Context(
        service=service,
        pools=ordered,
        eligible=named or [p for p in ordered if p.selects(service)],
        named=bool(named),
        ledger=ledger,
    )
    addresses: list[IPAddress] = []
    failures: list[Failure] = []
    for family in service.families:
        got = ctx.assign_family(family)
        if isinstance(got, Failure):
            failures.append(got)
        else:
            addresses.append(got)
    warnings = tuple(ctx.warnings)
    if not failures:
        return Assignment(tuple(addresses), None, warnings)
    failure = failures[0]
    if len(failures) > 1:
        failure = Failure(failure.reason, "; ".join(f.message for f in failures))
    if service.require_all_families or not addresses:
        return Assignment((), failure, warnings)
    return Assignment(tuple(addresses), failure, warnings)


def _outside(address: IPAddress) -> str:
    return (
        f"{address} is in no LoadBalancerIPPool (was its pool shrunk or deleted?); kept, and"
        " never handed to another Service; request another address to move"
    )


@dataclass(kw_only=True)
class _Context:
    service: LBService
    pools: Sequence[Pool]  # every pool, by name
    eligible: Sequence[Pool]  # the named pools, else every pool that selects the Service
    named: bool
    ledger: Ledger
    warnings: list[str] = field(default_factory=list)

    def assign_family(self, family: str) -> IPAddress | Failure:
        service = self.service
        requested = next((a for a in service.requested if IP_FAMILY[family_of(a)] == family), None)
        current = next((a for a in service.assigned if IP_FAMILY[family_of(a)] == family), None)
        if requested is not None:
            return self.check_requested(requested)
        if current is not None and self.conflict(current) is None:
            if any(p.contains(current) for p in self.eligible):
                return current
            if not any(p.contains(current) for p in self.pools):
                self.warnings.append(_outside(current))
                return current
        # None yet; or a pool that no longer selects the Service holds it (the user moved it);
        # or another Service holds it too and keeps it: allocate afresh.
        return self.automatic(family)

    def conflict(self, address: IPAddress) -> LBService | None:
        """Another holder of `address` that cannot share it and outranks this Service."""
        mine = _rank(self.service, address)
        for other in self.ledger.holders(address):
            if (
                other.key != self.service.key
                and not can_share(self.service, other)
                and _rank(other, address) < mine
            ):
                return other
        return None

    def check_requested(self, address: IPAddress) -> IPAddress | Failure:
        service = self.service
        containing = [p for p in self.pools if p.contains(address)]
        held = address in service.assigned
        if not containing:
            if held and self.conflict(address) is None:
                self.warnings.append(_outside(address))
                return address
            return Failure(FailureReason.NotInAnyPool, f"{address} is in no LoadBalancerIPPool")
        if not any(p in self.eligible for p in containing):
            names = ", ".join(p.name for p in containing)
            which = (
                f"the pools named by {ANNOTATION_IP_POOL}" if self.named else "a pool selecting it"
            )
            return Failure(
                FailureReason.PoolNotSelecting,
                f"{address} is in LoadBalancerIPPool {names}, not in {which}",
            )
        for other in self.ledger.holders(address):
            if other.key == service.key or can_share(service, other):
                continue
            # Taking over an address someone else holds would cut their traffic: only when
            # both already hold it (a dual-active window) does the rank decide who keeps it.
            if not held or _rank(other, address) < _rank(service, address):
                return Failure(FailureReason.AddressInUse, _refusal(service, other, address))
        return address

    def automatic(self, family: str) -> IPAddress | Failure:
        service = self.service
        pools = [p for p in self.eligible if p.has_family(family) and (self.named or p.auto_assign)]
        if not pools:
            if self.named:
                message = f"the pools named by {ANNOTATION_IP_POOL} have no {family} addresses"
            else:
                message = (
                    f"no LoadBalancerIPPool with autoAssign and {family} addresses selects"
                    " this Service"
                )
            return Failure(FailureReason.NoMatchingPool, message)
        if service.sharing_key is not None:
            shared = sorted(
                {
                    a
                    for other in self.ledger.sharing(service.sharing_key)
                    if other.key != service.key and other.wants_addresses
                    for a in other.assigned
                    if IP_FAMILY[family_of(a)] == family and any(p.allocatable(a) for p in pools)
                }
            )
            for address in shared:
                holders = [h for h in self.ledger.holders(address) if h.key != service.key]
                if all(can_share(service, h) for h in holders):
                    return address
        for pool in pools:
            for address in pool.candidates(family):
                if not any(h.key != service.key for h in self.ledger.holders(address)):
                    return address
        names = ", ".join(p.name for p in pools)
        return Failure(
            FailureReason.PoolExhausted, f"no free {family} address in LoadBalancerIPPool {names}"
        )


def allocate_all(
    services: Iterable[LBService], pools: Sequence[Pool]
) -> dict[tuple[str, str], Assignment]:
    """Assign every Service in a deterministic order (name), each seeing the ones before:
    what one controller converges to from a cold start. For tests and the dry run."""
    ledger = MemoryLedger({s.key: s for s in services})
    out: dict[tuple[str, str], Assignment] = {}
    for key in sorted(ledger.services):
        service = ledger.services[key]
        result = assign(service, pools, ledger)
        if result is None:
            continue
        out[key] = result
        if result.addresses != service.assigned:
            ledger.put(with_addresses(service, result.addresses))
    return out


def with_addresses(service: LBService, addresses: Sequence[IPAddress]) -> LBService:
    """The Service as it will be once its status says `addresses`."""
    return replace(service, assigned=tuple(addresses))


# --- pool status ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolUsage:
    total: int  # allocatable addresses
    assigned: int  # addresses of the pool held by some Service (requested .0/.255 too)
    available: int  # allocatable addresses nobody holds
    outside: tuple[tuple[str, str, str], ...]  # (namespace, name, address) in no pool


def pool_usage(
    pool: Pool,
    pools: Sequence[Pool],
    held: Mapping[IPAddress, Sequence[LBService]],
) -> PoolUsage:
    """Counts for a pool's status. `held`: every held address and its holders. Addresses held
    by Services this pool selects that are in no pool at all are reported as `outside`."""
    assigned = available_used = 0
    outside: list[tuple[str, str, str]] = []
    for address, holders in held.items():
        if pool.contains(address):
            assigned += 1
            if pool.allocatable(address):
                available_used += 1
        elif not any(p.contains(address) for p in pools):
            outside.extend(
                (h.ref.namespace, h.ref.name, str(address))
                for h in holders
                if h.wants_addresses and pool.selects(h)
            )
    total = pool.total()
    return PoolUsage(
        total=total,
        assigned=assigned,
        available=total - available_used,
        outside=tuple(sorted(outside)),
    )


def pool_status(
    raw_pool: Mapping[str, Any],
    pools: Sequence[Pool],
    held: Mapping[IPAddress, Sequence[LBService]],
    now: str,
) -> dict[str, Any] | None:
    """A LoadBalancerIPPool's new status (counts capped at int64, conditions Valid, Exhausted,
    AddressesOutsidePool), or None when its current status already says it."""
    meta = raw_pool.get("metadata")
    generation = meta.get("generation") if isinstance(meta, Mapping) else None
    observed = generation if isinstance(generation, int) else None
    current_raw = raw_pool.get("status")
    current: Mapping[str, Any] = current_raw if isinstance(current_raw, Mapping) else {}
    conditions = current.get("conditions")
    try:
        pool = Pool.from_view(parse_load_balancer_ip_pool(raw_pool))
    except InvalidObjectError as err:
        conditions = set_condition(
            conditions,
            Condition(
                type="Valid",
                status="False",
                reason="InvalidSpec",
                message=err.detail,
                observed_generation=observed,
            ),
            now,
        )
        desired = {**current, "total": 0, "assigned": 0, "available": 0, "conditions": conditions}
        return None if desired == dict(current) else desired
    usage = pool_usage(pool, pools, held)
    checks = [
        Condition(
            type="Valid",
            status="True",
            reason="Valid",
            message="the pool's addresses are in use for allocation",
            observed_generation=observed,
        ),
        Condition(
            type="Exhausted",
            status="True" if usage.available == 0 else "False",
            reason="NoFreeAddresses" if usage.available == 0 else "FreeAddresses",
            message=f"{usage.available} of {usage.total} addresses free",
            observed_generation=observed,
        ),
        Condition(
            type="AddressesOutsidePool",
            status="True" if usage.outside else "False",
            reason="AddressesOutsidePool" if usage.outside else "NoneOutside",
            message=(
                "Services this pool selects hold addresses in no pool (shrunk or deleted "
                "pool?), kept until they ask for another: "
                + name_list([f"{ns}/{name} {ip}" for ns, name, ip in usage.outside])
                if usage.outside
                else "no Service this pool selects holds an address outside every pool"
            ),
            observed_generation=observed,
        ),
    ]
    for condition in checks:
        conditions = set_condition(conditions, condition, now)
    desired = {
        **current,
        "total": min(usage.total, INT64_MAX),
        "assigned": min(usage.assigned, INT64_MAX),
        "available": min(usage.available, INT64_MAX),
        "conditions": conditions,
    }
    return None if desired == dict(current) else desired
