"""`kubgp-speaker run` keeps glibc's mmap threshold fixed (docs/route-import.md, "Figures")."""

from __future__ import annotations

import ctypes
import platform

import pytest

from speaker.cli import run_cmd

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc
def test_sets_the_threshold_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    calls: list[tuple[int, int]] = []
    real = ctypes.CDLL

    class Libc:
        def __init__(self, name: object) -> None:
            self._libc = real(None)

        def __getattr__(self, name: str) -> object:
            if name == "mallopt":
                return self.mallopt
            return getattr(self._libc, name)

        def mallopt(self, param: ctypes.c_int, value: ctypes.c_int) -> int:
            calls.append((param.value, value.value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", Libc)
    assert run_cmd.fix_mmap_threshold() is True
    assert calls == [(run_cmd.M_MMAP_THRESHOLD, run_cmd.MMAP_THRESHOLD)]


@glibc
def test_the_real_mallopt_accepts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert run_cmd.fix_mmap_threshold() is True


def test_an_operators_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert run_cmd.fix_mmap_threshold() is False
