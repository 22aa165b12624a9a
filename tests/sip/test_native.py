"""The SIP core compiled with mypyc (softphone/native.py, run by ``make setup``): it is
what runs when built and current, the pure modules take over when it is stale or
SOFTPHONE_PURE is set, and both read every torture message alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import softphone.sip as sip
from softphone.sip import message

TORTURE = Path(__file__).resolve().parent / "torture"

VERDICTS = r"""
import json, sys
from pathlib import Path
import softphone.sip.message as module
from softphone.sip.message import Request, parse_message
from softphone.sip.errors import SipParseError
out = {"compiled": module.__file__.endswith(".so")}
for path in sorted(Path(sys.argv[1]).glob("rfc*/*.dat")):
    try:
        m = parse_message(path.read_bytes())
        row = [m.to_bytes().decode("latin-1"), str(m.top_via), str(m.from_), str(m.to),
               list(m.cseq), m.call_id]
        if isinstance(m, Request):
            row += [str(m.request_uri), [str(c) for c in m.contacts]]
    except SipParseError as exc:
        row = ["error", exc.reason]
    out[path.stem] = row
print(json.dumps(out))
"""


def _verdicts(pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SOFTPHONE_PURE"}
    if pure:
        env["SOFTPHONE_PURE"] = "1"
    proc = subprocess.run([sys.executable, "-c", VERDICTS, str(TORTURE)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _compiled_built() -> bool:
    return (sip.COMPILED_DIR / "SOURCES").exists()


def test_the_compiled_core_runs_when_built():
    if os.environ.get("SOFTPHONE_PURE"):
        pytest.skip("SOFTPHONE_PURE is set: the pure modules run by request")
    if not _compiled_built():
        if os.environ.get("CI"):
            pytest.fail("the compiled SIP core is missing: make setup builds it "
                        "(softphone/native.py)")
        pytest.skip("the compiled SIP core is not built (make setup builds it)")
    assert message.__file__.endswith(".so"), \
        f"{message.__file__}: the build in {sip.COMPILED_DIR} is stale; make setup rebuilds it"


def test_a_stale_or_refused_build_falls_back_to_the_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("SOFTPHONE_PURE", raising=False)
    monkeypatch.setattr(sip, "COMPILED_DIR", tmp_path)
    assert not sip._compiled_is_current()  # absent
    (tmp_path / "SOURCES").write_text(sip.source_stamp())
    assert sip._compiled_is_current()
    monkeypatch.setenv("SOFTPHONE_PURE", "1")
    assert not sip._compiled_is_current()
    monkeypatch.delenv("SOFTPHONE_PURE")
    stale = sip.source_stamp().replace(sip.source_stamp().split()[1], "0" * 64, 1)
    (tmp_path / "SOURCES").write_text(stale)  # message.py edited since the build
    assert not sip._compiled_is_current()


def test_pure_and_compiled_read_the_torture_corpus_alike():
    if not _compiled_built() or os.environ.get("SOFTPHONE_PURE"):
        pytest.skip("needs the compiled SIP core (make setup)")
    compiled, pure = _verdicts(pure=False), _verdicts(pure=True)
    assert compiled.pop("compiled") is True and pure.pop("compiled") is False
    assert len(pure) == 61
    assert compiled == pure
