"""Test-wide setup: the lab fixtures (real BGP daemons, network namespaces) and the product's
processes (`speaker_factory`, `procs`)."""

from hypothesis import HealthCheck, settings

pytest_plugins = ["testing.routers.fixtures", "testing.procs"]

# Property tests check behaviour, never timing: on a loaded 2-core machine one example can take
# longer than Hypothesis's default 200 ms deadline, and generating data can trip its "too slow"
# (or, by chance, "data too large") health check; either would fail a run for no fault of the
# code. Per-test @settings still set their own example counts and inherit these.
settings.register_profile(
    "kubgp", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("kubgp")
