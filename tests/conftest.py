"""Shared pytest fixtures: real SIP peers, headless audio, lossy links, the softphone CLI.

Peers run on 127.0.0.1 with ports picked free at run time; each fixture stops what it
started, by PID. A missing peer binary skips the test locally and fails it under CI=true.
Helpers live in tests/peers/ (importable as ``peers``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from peers import (Baresip, HeadlessPulse, Kamailio, LossyLink, Sipp, SippResult,
                   SoftphoneProcess, register)
from peers.procs import stop_leftovers


# --- Kamailio -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kamailio(tmp_path_factory) -> Iterator[Kamailio]:
    """Registrar/proxy (MD5 digest, qop=auth) on a free port; one per test module, so
    registrations from one module never leak into the next. ``kamailio.restart()``
    clears them inside a module."""
    kam = Kamailio(tmp_path_factory.mktemp("kamailio"))
    kam.start()
    yield kam
    kam.stop()


@pytest.fixture(scope="module")
def kamailio_sha256(tmp_path_factory) -> Iterator[Kamailio]:
    """Same, but challenging with ``algorithm=SHA-256`` (RFC 8760; Kamailio 5.6 auth
    module parameter ``algorithm``)."""
    kam = Kamailio(tmp_path_factory.mktemp("kamailio-sha256"), sha256=True)
    kam.start()
    yield kam
    kam.stop()


# --- SIPp -----------------------------------------------------------------------------
class SippFactory:
    """``sipp.run("uac_auth", remote=kam.addr, ...)`` (foreground) or
    ``sipp.start("uas", local_port=p, ...)`` (background, stopped at teardown);
    ``sipp.register(kam, "1001", ...)``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._background: list[Sipp] = []

    def make(self, scenario: str, **kw) -> Sipp:
        return Sipp(scenario, self.run_dir, **kw)

    def run(self, scenario: str, **kw) -> SippResult:
        return self.make(scenario, **kw).run()

    def start(self, scenario: str, **kw) -> Sipp:
        s = self.make(scenario, **kw).start()
        self._background.append(s)
        return s

    def register(self, kam: Kamailio, user: str, **kw) -> SippResult:
        return register(kam, user, self.run_dir, **kw)

    def close(self) -> None:
        for s in self._background:
            if s.running:
                s.stop()


@pytest.fixture
def sipp(tmp_path) -> Iterator[SippFactory]:
    factory = SippFactory(tmp_path / "sipp")
    yield factory
    factory.close()


# --- baresip --------------------------------------------------------------------------
@pytest.fixture
def baresip(tmp_path) -> Iterator:
    """Factory: ``baresip("bob", kamailio=kam, tone_hz=880)`` -> a started Baresip."""
    started: list[Baresip] = []

    def make(profile: str, **kw) -> Baresip:
        b = Baresip(profile, tmp_path / "baresip", **kw)
        started.append(b)
        return b.start()

    yield make
    for b in started:
        b.stop()


# --- softphone CLI --------------------------------------------------------------------
@pytest.fixture
def softphone() -> Iterator:
    """Factory: ``softphone("call", uri, "--duration", "1", env={...})`` -> a started
    SoftphoneProcess (``--events jsonl`` appended); terminated at teardown."""
    started: list[SoftphoneProcess] = []

    def make(*args: str, **kw) -> SoftphoneProcess:
        p = SoftphoneProcess(*args, **kw)
        started.append(p)
        return p.start()

    yield make
    for p in started:
        p.terminate()


# --- audio ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def headless_pulse(tmp_path_factory) -> Iterator[HeadlessPulse]:
    """The PulseAudio daemon object (for pactl); prefer ``headless_audio`` for the env."""
    pulse = HeadlessPulse(tmp_path_factory.mktemp("pulse"))
    pulse.start()
    yield pulse
    pulse.stop()


@pytest.fixture(scope="session")
def headless_audio(headless_pulse) -> dict[str, str]:
    """Client env for the headless PulseAudio (XDG_RUNTIME_DIR, PULSE_SERVER, PULSE_SINK=spk,
    PULSE_SOURCE=spk.monitor): pass it to subprocesses that open audio devices."""
    return dict(headless_pulse.env)


# --- lossy links ----------------------------------------------------------------------
@pytest.fixture
def lossy_link() -> Iterator[LossyLink]:
    """Two fresh network namespaces joined by a veth pair; ``set_loss(ns, pct)``."""
    link = LossyLink()
    link.create()
    yield link
    link.destroy()


# --- safety net -----------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _no_stray_peers() -> Iterator[None]:
    """At session end, stop (by PID) any peer a test or helper failed to stop, and say so."""
    yield
    leftovers = stop_leftovers()
    if leftovers:
        warnings.warn(f"stopped peer processes left running: {', '.join(leftovers)}", stacklevel=1)
