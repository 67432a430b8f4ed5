"""Test-wide setup: the lab fixtures (real BGP daemons, network namespaces) and the product's
processes (`speaker_factory`, `procs`)."""

pytest_plugins = ["testing.routers.fixtures", "testing.procs"]
