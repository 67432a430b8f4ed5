"""Test-wide setup: the lab fixtures (real BGP daemons, network namespaces) and our speaker as
a real process (`speaker_factory`)."""

pytest_plugins = ["testing.routers.fixtures", "testing.speaker_proc"]
