"""Test-wide setup: the lab fixtures (real BGP daemons, network namespaces)."""

pytest_plugins = ["tests.lab.fixtures"]
