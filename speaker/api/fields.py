"""Reading camelCase documents field by field: the desired state (speaker.api.schema), control
messages (speaker.api.ipc) and the Kubernetes objects the planner reads
(controller.domain.objects). Pure, standard library only.

Every reader takes `(value, path)` and returns the value (addresses and prefixes in canonical
spelling) or raises `FieldError`, whose message starts with the key path:
`peers[1].holdTime: must be between 0 and 65535`. `Fields` reads one mapping: which keys it may
have, which it must have, and each key's path.

Type names in messages are JSON's (null, boolean, integer, number, string); a document's
containers are named in its own words (`Words`): a mapping and a list in the desired state and
in Kubernetes objects (YAML), an object and an array in the control protocol (JSON).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

T = TypeVar("T")
Reader = Callable[[object, str], T]


class FieldError(ValueError):
    """A field that does not read; the message starts with the key path (`path`), `detail` is
    the rest."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.detail = message


@dataclass(frozen=True, slots=True)
class Words:
    """What a document calls its containers."""

    mapping: str
    sequence: str


YAML: Final = Words(mapping="mapping", sequence="list")
JSON: Final = Words(mapping="object", sequence="array")

_NAMES: Final[Mapping[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
}


def type_name(value: object, words: Words = YAML) -> str:
    name = _NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, Mapping):
        return words.mapping
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return words.sequence
    return type(value).__name__


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- values ---------------------------------------------------------------------------------


def integer(value: object, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(path, f"must be an integer, not {type_name(value)}")
    if not lo <= value <= hi:
        raise FieldError(path, f"must be between {lo} and {hi}")
    return value


def number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise FieldError(path, f"must be a number, not {type_name(value)}")
    return float(value)


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(path, f"must be true or false, not {type_name(value)}")
    return value


def string(value: object, path: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, not {type_name(value)}")
    if not value:
        raise FieldError(path, "must not be empty")
    return value


def any_string(value: object, path: str) -> str:
    """A string, empty or not."""
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, not {type_name(value)}")
    return value


def mapping(value: object, path: str, words: Words = YAML) -> Mapping[str, object]:
    if isinstance(value, dict):  # the usual case, without the ABC's slower check
        return value
    if not isinstance(value, Mapping):
        raise FieldError(path, f"must be {_article(words.mapping)}, not {type_name(value, words)}")
    return value


def sequence(value: object, path: str, words: Words = YAML) -> Sequence[object]:
    if isinstance(value, list | tuple):  # the usual case, without the ABC's slower check
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise FieldError(path, f"must be {_article(words.sequence)}, not {type_name(value, words)}")
    return value


def one_of(value: object, path: str, choices: Collection[str]) -> str:
    text = string(value, path)
    if text not in choices:
        raise FieldError(path, f"must be one of {sorted(choices)}, not {text!r}")
    return text


def ip_address(value: object, path: str) -> str:
    text = string(value, path)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise FieldError(path, f"must be an IPv4 or IPv6 address, not {text!r}") from None


def ipv4_address(value: object, path: str) -> str:
    text = string(value, path)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise FieldError(path, f"must be an IPv4 dotted quad, not {text!r}") from None


def prefix(value: object, path: str) -> str:
    """A CIDR prefix without host bits, e.g. 10.244.1.0/24."""
    text = string(value, path)
    if "/" not in text:
        raise FieldError(path, f"must be a CIDR prefix (address/length), not {text!r}")
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        pass
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FieldError(path, f"must be a CIDR prefix, not {text!r}") from None
    raise FieldError(path, f"{text!r} has host bits set; the prefix is {net}")


def items(value: object, path: str, item: Reader[T], words: Words = YAML) -> tuple[T, ...]:
    """A list read item by item (`path[i]`)."""
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(sequence(value, path, words)))


def unique(value: object, path: str, item: Reader[T]) -> tuple[T, ...]:
    """A list read item by item (`path[i]`), no value twice."""
    out: list[T] = []
    for i, v in enumerate(sequence(value, path)):
        parsed = item(v, f"{path}[{i}]")
        if parsed in out:
            raise FieldError(f"{path}[{i}]", f"duplicate {parsed!r}")
        out.append(parsed)
    return tuple(out)


def or_default(value: object, path: str, read: Reader[T], default: T) -> T:
    """`default` when `value` is null (absent), else what `read` makes of it."""
    return default if value is None else read(value, path)


# --- mappings -----------------------------------------------------------------------------


class Fields:
    """The fields of one mapping at `path`. With `keys`, any other key is refused (`unknown
    key`); `required` keys must be there (`required`)."""

    __slots__ = ("doc", "path")

    def __init__(
        self,
        doc: object,
        path: str,
        keys: Iterable[str] | None = None,
        *,
        required: Iterable[str] = (),
        words: Words = YAML,
    ) -> None:
        self.doc = mapping(doc, path, words)
        self.path = path
        if keys is not None:
            allowed = keys if isinstance(keys, set | frozenset) else set(keys)
            for key in self.doc:
                if not isinstance(key, str):
                    raise FieldError(path, f"keys must be strings, not {key!r}")
                if key not in allowed:
                    raise FieldError(join(path, key), "unknown key")
        for key in required:
            if key not in self.doc:
                raise FieldError(join(path, key), "required")

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.doc

    def raw(self, key: str) -> object:
        return self.doc.get(key)

    def required(self, key: str) -> object:
        if key not in self.doc:
            raise FieldError(self.at(key), "required")
        return self.doc[key]

    def get(self, key: str, read: Reader[T], default: T) -> T:
        """What `read` makes of the key's value; `default` when the key is missing."""
        if key not in self.doc:
            return default
        return read(self.doc[key], self.at(key))

    def optional(self, key: str, read: Reader[T]) -> T | None:
        """What `read` makes of the key's value; None when it is missing or null."""
        value = self.doc.get(key)
        return None if value is None else read(value, self.at(key))
