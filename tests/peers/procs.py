"""Process plumbing shared by the peer helpers: binary checks, bounded stop by PID, reaping.

Every helper starts its peer with ``start_new_session=True`` and stops it through the PID
(or the process group that PID leads, which only holds what we started). Nothing here
looks processes up by name.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

import pytest

_PR_SET_CHILD_SUBREAPER = 36
_started: dict[int, tuple[str, str | None]] = {}  # pid -> (what, start time), safety net


def _start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (field 22 of /proc/pid/stat): tells reused PIDs apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def track(pid: int, what: str) -> int:
    """Remember a PID we started, so ``stop_leftovers`` can end it if a helper could not."""
    _started[pid] = (what, _start_time(pid))
    return pid


def stop_leftovers() -> list[str]:
    """Stop every tracked process still alive (same PID *and* start time); return them."""
    found = []
    for pid, (what, started) in list(_started.items()):
        _started.pop(pid, None)
        if started is not None and _start_time(pid) == started and pid_alive(pid):
            found.append(f"{what} (pid {pid})")
            stop_pid(pid, grace=2.0)
    return found


class PeerTimeout(AssertionError):
    """A bounded wait on a peer ran out; the message carries what the peer said."""


def in_ci() -> bool:
    """CI sets CI=true: there a missing peer is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing peer is a failure)", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """Absolute path of ``name`` on PATH (also /usr/sbin), else fail under CI / skip."""
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        unavailable(f"{name} not installed (run `make setup`)")
    return path  # type: ignore[return-value]


def become_subreaper() -> None:
    """Adopt orphaned descendants (daemons that double-fork), so we can reap them by PID.

    PID 1 in this container does not reap, so a daemon we killed would otherwise stay a
    zombie for ever.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in {"Z", "X"}


def reap(pid: int) -> None:
    """Collect ``pid`` if it is our (possibly adopted) child and has exited."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def reap_adopted_zombies(names: set[str]) -> list[int]:
    """Reap exited children of ours named ``names`` that we never knew the PID of:
    intermediate forks of a daemon re-parented to us (see ``become_subreaper``)."""
    reaped = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if comm in names and fields[0] == "Z" and fields[1] == me:
            reap(int(entry))
            reaped.append(int(entry))
    return reaped


def stop_pid(pid: int, *, signals: Sequence[signal.Signals] = (signal.SIGTERM,),
             grace: float = 5.0, kill_after: float = 2.0) -> bool:
    """Signal ``pid`` with each of ``signals`` in turn (waiting ``grace`` s after each),
    then SIGKILL. Returns True if it had to be killed."""
    deadline_step = grace
    for sig in signals:
        if not pid_alive(pid):
            reap(pid)
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        if _wait_gone(pid, deadline_step):
            reap(pid)
            return False
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(pid, kill_after)
        reap(pid)
        return True
    reap(pid)
    return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


def stop_popen(proc: subprocess.Popen, *, signals: Sequence[signal.Signals] = (signal.SIGTERM,),
               grace: float = 5.0, kill_after: float = 2.0, group: bool = True) -> int | None:
    """Stop a child we started: each of ``signals`` to its PID, then SIGKILL to its PID and,
    when ``group`` (it was started with start_new_session=True), to the group it leads."""
    if proc.poll() is None:
        for sig in signals:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            pass
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftover workers in the session we created
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate`` until it is truthy; raise PeerTimeout after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise PeerTimeout(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)
