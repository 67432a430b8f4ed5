"""The Helm chart makes SIGTERM (a rolling upgrade) a graceful restart; withdraw on request."""

from __future__ import annotations

from tests.packaging.chart import component_name, container, one, render


def _speaker_args(values: dict[str, object] | None = None) -> list[str]:
    ds = one(render(values), "DaemonSet", component_name("node"))
    return list(container(ds, "speaker")["args"])


def test_speaker_shutdown_defaults_to_graceful_restart() -> None:
    assert "--shutdown=graceful-restart" in _speaker_args()
    assert "--shutdown=withdraw" in _speaker_args({"speaker": {"shutdown": "withdraw"}})
