"""A desired-state file (`kubgp.io/speaker/v1`, YAML or JSON) read for `run --config` and
`apply`: `load_config(path)` returns the state or raises `ConfigError`, whose text says what is
wrong and where (unreadable, not UTF-8, not YAML or JSON, nested too deeply, a schema error
with its key path): bad content is a message, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from speaker.api.schema import DesiredState, SchemaError, parse_desired_state

_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """The file cannot be used; the text names the file and what is wrong."""


def load_config(path: Path) -> DesiredState:
    """Read and validate the file; ConfigError says what is wrong and where."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        try:
            doc = json.loads(text)  # fast path: PyYAML's pure-Python parser is ~100x slower
        except ValueError:
            try:
                doc = yaml.load(text, Loader=_YAML_LOADER)  # safe (CSafeLoader when built)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not YAML or JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: the document must be a mapping")
        try:
            return parse_desired_state(doc)
        except SchemaError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


__all__ = ["ConfigError", "load_config"]
