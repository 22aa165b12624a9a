"""Scenarios end to end (issue: test endpoint scenarios): two softphones running scenarios
against each other both ways, every step kind passing and failing for the right reason;
against real peers — baresip answering with a tone file, a SIPp UAS sending RFC 4733
digits, Kamailio in between with digest auth; JUnit reports validated against the common
JUnit schema (the rules of Jenkins' junit-10.xsd, in tests/scenario)."""

from __future__ import annotations

import re
import subprocess
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from peers.baresip import Baresip
from peers.net import free_port_block, free_udp_port
from peers.phoneconfig import write_config
from peers.procs import require_binary
from peers.sipp import Sipp

SIPP_PCAPS = Path("/usr/share/sip-tester")


# ============================================================================ helpers
def scenario(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def loopback(tmp_path: Path, name: str, port: int | None = None,
             codecs: list[str] | None = None) -> Path:
    return write_config(tmp_path / f"{name}-config.toml",
                        listen=f"127.0.0.1:{port or free_udp_port()}", codecs=codecs,
                        extra="[control]\nenabled = false\n")


def steps(p, result: str | None = None) -> list[dict]:
    return [e for e in p.events if e["event"] == "step" and (result is None or
                                                              e["result"] == result)]


def step_summary(p) -> list[tuple[int, str, str]]:
    return [(e["index"], e["step"], e["result"]) for e in steps(p)]


JUNIT_XSD = Path(__file__).resolve().parents[1] / "scenario" / "junit-10.xsd"


def check_junit(path: Path) -> ET.Element:
    """Valid against the JUnit schema CI readers use (tests/scenario/junit-10.xsd, with a
    real XSD validator), and the counts agreeing with the testcases."""
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(path))
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
    return root


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([require_binary("espeak-ng"), "-w", str(path),
                    "Thank you for calling. Your call is important to us. "
                    "Please hold the line."], check=True, timeout=30)
    return path


# ============================================================================ two softphones
def test_two_phones_run_scenarios_both_ways_and_every_step_passes(softphone, tmp_path,
                                                                  speech_wav):
    port = free_udp_port()
    callee = scenario(tmp_path, "callee", f"""
name = "answering test"
[[steps]]
step = "expect_incoming"
from = "sip:*@127.0.0.1*"
to = "sip:ivr@127.0.0.1:{port}"
headers = {{ "User-Agent" = "softphone*" }}
[[steps]]
step = "ring"
seconds = 0.3
[[steps]]
step = "answer"
[[steps]]
step = "expect_codec"
codec = "PCMU"
[[steps]]
step = "play"
tone = 600
duration = 1.5
[[steps]]
step = "expect_dtmf"
digits = "12#"
within = 8
[[steps]]
step = "expect_speech"
duration = 1.5
within = 8
[[steps]]
step = "record"
file = "{tmp_path}/heard-{{n}}.wav"
seconds = 1
[[steps]]
step = "expect_hangup"
within = 15
""")
    caller = scenario(tmp_path, "caller", f"""
name = "placing test"
[[steps]]
step = "expect_ringing"
within = 5
[[steps]]
step = "expect_answer"
within = 5
[[steps]]
step = "expect_tone"
frequency = 600
duration = 1
within = 5
[[steps]]
step = "expect_silence"
duration = 0.3
within = 5
[[steps]]
step = "dtmf"
digits = "1,2#"
[[steps]]
step = "play"
file = "{speech_wav}"
[[steps]]
step = "hold"
[[steps]]
step = "resume"
[[steps]]
step = "wait"
seconds = 0.2
[[steps]]
step = "hangup"
""")
    b = softphone("answer", "--scenario", str(callee), "--max-calls", "1", "--junit",
                  str(tmp_path / "b.xml"), "--config", str(loopback(tmp_path, "b", port,
                                                                  codecs=["PCMU"])))
    b.wait_event("listening", timeout=15)
    a = softphone("call", f"sip:ivr@127.0.0.1:{port}", "--scenario", str(caller), "--junit",
                  str(tmp_path / "a.xml"), "--config", str(loopback(tmp_path, "a")))
    assert a.wait_exit(60) == 0, a.diagnostics() + b.diagnostics()
    assert b.wait_exit(30) == 0, b.diagnostics()
    assert [r for _, _, r in step_summary(a)] == ["passed"] * 10, step_summary(a)
    assert [r for _, _, r in step_summary(b)] == ["passed"] * 9, step_summary(b)
    tone = steps(a)[2]
    assert re.match(r"600\.\d Hz at -1\d\.\d dBFS for 1\.0\d s", tone["value"]), tone
    assert steps(b)[5]["value"] == "got 12#"
    assert "level swing" in steps(b)[6]["value"]
    for p, name in ((a, "placing test"), (b, "answering test")):
        summary = p.find_event("summary")
        assert summary["scenario"] == name and summary["calls"] == 1 and summary["passed"] == 1
        assert p.find_event("call_verdict")["result"] == "passed"
    with wave.open(str(tmp_path / "heard-1.wav")) as w:  # what A sent, recorded by B
        assert w.getframerate() == 8000 and abs(w.getnframes() - 8000) <= 160
    for report in ("a.xml", "b.xml"):
        root = check_junit(tmp_path / report)
        case = root.find("testsuite/testcase")
        assert case.find("failure") is None and "step 1 " in case.find("system-out").text


def test_failed_expectations_say_what_was_measured(softphone, tmp_path):
    port = free_udp_port()
    callee = scenario(tmp_path, "callee", """
on_failure = "continue"
[[steps]]
step = "answer"
[[steps]]
step = "play"
tone = 440
duration = 3
wait = false
[[steps]]
step = "expect_dtmf"
digits = "9"
within = 1
[[steps]]
step = "expect_hangup"
within = 10
""")
    caller = scenario(tmp_path, "caller", """
[[steps]]
step = "expect_answer"
[[steps]]
step = "expect_codec"
codec = "G722"
on_failure = "continue"
[[steps]]
step = "expect_tone"
frequency = 1000
duration = 1
within = 1.5
on_failure = "continue"
[[steps]]
step = "expect_speech"
within = 1
[[steps]]
step = "dtmf"
digits = "1"
[[steps]]
step = "hangup"
""")
    b = softphone("answer", "--scenario", str(callee), "--max-calls", "1",
                  "--config", str(loopback(tmp_path, "b", port, codecs=["PCMU"])))
    b.wait_event("listening", timeout=15)
    a = softphone("call", f"sip:x@127.0.0.1:{port}", "--scenario", str(caller), "--junit",
                  str(tmp_path / "a.xml"), "--config", str(loopback(tmp_path, "a")))
    assert a.wait_exit(30) == 1, a.diagnostics()
    assert b.wait_exit(30) == 1, b.diagnostics()
    got = {e["index"]: e for e in steps(a)}
    assert got[1]["result"] == "passed"
    assert got[2]["result"] == "failed" and got[2]["message"] == "codec is PCMU, expected G722"
    assert got[3]["result"] == "failed"
    assert got[3]["message"].startswith("no 1000 Hz tone (±20 Hz")
    assert re.search(r"heard 440 Hz at -1\d\.\d dBFS for 1\.\d\d s within 1\.5 s",
                     got[3]["message"]), got[3]
    assert got[4]["result"] == "failed" and "a steady tone rather than speech" in got[4]["message"]
    # step 4 ends the call (default on_failure = hangup): the rest is skipped
    assert (got[5]["result"], got[6]["result"]) == ("skipped", "skipped")
    assert got[5]["message"] == "step 4 failed"
    b_steps = {e["index"]: e for e in steps(b)}
    assert b_steps[3]["result"] == "failed" and b_steps[3]["message"] == "no DTMF within 1 s"
    assert b_steps[4]["result"] == "passed"  # continue: it still saw the hang-up
    verdict = a.find_event("call_verdict")
    assert verdict["result"] == "failed" and verdict["failed"] == 3
    assert verdict["message"] == "step 2 expect_codec: codec is PCMU, expected G722"
    assert "softphone: scenario caller: 1 of 1 call failed" in a.stderr_text()
    root = check_junit(tmp_path / "a.xml")
    failures = root.findall("testsuite/testcase/failure")
    assert [f.get("type") for f in failures] == ["expect_codec", "expect_tone", "expect_speech"]
    assert root.find("testsuite").get("failures") == "1"


def test_answering_side_expectations_fail_with_what_arrived(softphone, tmp_path):
    """expect_incoming (From, To, display name, a missing and a wrong header), expect_dtmf
    with the wrong digit, expect_silence while a tone arrives, expect_hangup when the far
    end stays: each fails saying what came instead; and a record that cannot be written
    at run time (the disk is full: a link to /dev/full), waited for or not, fails too."""
    full = Path("/dev/full")
    assert full.is_char_device(), "the test needs /dev/full (a disk that is always full)"
    for name in ("bg", "fg"):
        (tmp_path / f"{name}.wav").symlink_to(full)
    port = free_udp_port()
    callee = scenario(tmp_path, "callee", f"""
on_failure = "continue"
[[steps]]
step = "expect_incoming"
from = "sip:nobody@*"
[[steps]]
step = "expect_incoming"
to = "sip:other@*"
[[steps]]
step = "expect_incoming"
display_name = "Alice*"
[[steps]]
step = "expect_incoming"
headers = {{ "X-Missing" = "*" }}
[[steps]]
step = "expect_incoming"
headers = {{ "User-Agent" = "baresip*" }}
[[steps]]
step = "answer"
[[steps]]
step = "expect_dtmf"
digits = "9"
within = 5
[[steps]]
step = "expect_silence"
duration = 1
within = 1.5
[[steps]]
step = "expect_hangup"
within = 1
""")
    caller = scenario(tmp_path, "caller", f"""
on_failure = "continue"
[[steps]]
step = "expect_answer"
[[steps]]
step = "play"
tone = 500
duration = 8
wait = false
[[steps]]
step = "dtmf"
digits = "1"
[[steps]]
step = "record"
file = "{tmp_path}/bg.wav"
seconds = 0.5
wait = false
[[steps]]
step = "record"
file = "{tmp_path}/fg.wav"
seconds = 0.5
[[steps]]
step = "expect_hangup"
within = 15
""")
    b = softphone("answer", "--scenario", str(callee), "--max-calls", "1",
                  "--config", str(loopback(tmp_path, "b", port)))
    b.wait_event("listening", timeout=15)
    a = softphone("call", f"sip:ivr@127.0.0.1:{port}", "--scenario", str(caller),
                  "--config", str(loopback(tmp_path, "a")))
    assert b.wait_exit(30) == 1, b.diagnostics()
    assert a.wait_exit(30) == 1, a.diagnostics()
    got = {e["index"]: e for e in steps(b)}
    assert [got[i]["result"] for i in range(1, 10)] == ["failed"] * 5 + ["passed"] + \
        ["failed"] * 3, step_summary(b)
    assert re.fullmatch(r"from is 'sip:\S+@127\.0\.0\.1:\d+', expected 'sip:nobody@\*'",
                        got[1]["message"]), got[1]
    assert got[2]["message"] == f"to is 'sip:ivr@127.0.0.1:{port}', expected 'sip:other@*'"
    assert got[3]["message"].startswith("display_name is ") and \
        got[3]["message"].endswith(", expected 'Alice*'"), got[3]
    assert got[4]["message"] == "no X-Missing header"
    assert re.fullmatch(r"User-Agent is 'softphone[^']*', expected 'baresip\*'",
                        got[5]["message"]), got[5]
    assert got[7]["message"] == "got '1', expected '9'"
    assert re.fullmatch(r"no silence \(1 s at most -50 dBFS\): the longest quiet stretch was "
                        r"0\.\d\d s \(loudest -1\d\.\d dBFS\) within 1\.5 s",
                        got[8]["message"]), got[8]
    assert got[9]["message"] == "the far end did not hang up within 1 s"
    # the caller: its far end hung up (after its last failed step), both records failed
    mine = steps(a)
    assert mine[-1]["step"] == "expect_hangup" and mine[-1]["result"] == "passed", mine
    records = [e for e in mine if e["step"] == "record" and e["result"] == "failed"]
    assert sorted(e["message"] for e in records) == [
        f"cannot write {tmp_path}/{name}.wav: No space left on device" for name in ("bg", "fg")
    ], mine
    assert a.find_event("call_verdict")["failed"] == 2


def test_placing_side_setup_expectations_fail_on_their_time_limits(softphone, tmp_path):
    """Three callers at once to one that rings 1.5 s before it answers: expect_answer and
    expect_status run out of time, and an answer where a refusal was expected fails."""
    port = free_udp_port()
    callee = scenario(tmp_path, "callee", """
[[steps]]
step = "ring"
seconds = 1.5
[[steps]]
step = "answer"
[[steps]]
step = "expect_hangup"
""")
    b = softphone("answer", "--scenario", str(callee), "--max-calls", "3",
                  "--config", str(loopback(tmp_path, "b", port)))
    b.wait_event("listening", timeout=15)
    callers = {
        "late": ('[[steps]]\nstep = "expect_ringing"\n[[steps]]\nstep = "expect_answer"\n'
                 'within = 0.5\n', 2, "not answered within 0.5 s"),
        "slow": ('[[steps]]\nstep = "expect_status"\nstatus = 486\nwithin = 0.5\n', 1,
                 "no final answer within 0.5 s"),
        "answered": ('[[steps]]\nstep = "expect_status"\nstatus = [486, 603]\n', 1,
                     "the call was answered (expected 486 or 603)"),
    }
    runs = {name: softphone("call", f"sip:x@127.0.0.1:{port}", "--scenario",
                            str(scenario(tmp_path, name, text)),
                            "--config", str(loopback(tmp_path, name)))
            for name, (text, _, _) in callers.items()}
    for name, (_, index, message) in callers.items():
        a = runs[name]
        assert a.wait_exit(30) == 1, a.diagnostics()
        failed = steps(a, "failed")
        assert [(e["index"], e["message"]) for e in failed] == [(index, message)], steps(a)
    assert b.wait_exit(30) == 1, b.diagnostics()  # two of its calls were cancelled


def test_a_refused_re_invite_fails_hold_and_resume_against_sipp(softphone, sipp, tmp_path):
    """SIPp answers after a second without a 180 (expect_ringing runs out of time) and
    refuses a hold and a resume re-INVITE with 488: those steps fail with the status; the
    hold it accepts passes. Its answer has no telephone-event, so with ``dtmf_mode =
    "rfc4733"`` the dtmf step fails saying so (no INFO goes out instead)."""
    uas = sipp.start("uas_reinvite_refused", timeout=20, media_port=free_udp_port())
    path = scenario(tmp_path, "holds", """
on_failure = "continue"
[[steps]]
step = "expect_ringing"
within = 0.5
[[steps]]
step = "expect_answer"
[[steps]]
step = "dtmf"
digits = "5"
[[steps]]
step = "hold"
[[steps]]
step = "hold"
[[steps]]
step = "resume"
[[steps]]
step = "hangup"
""")
    cfg = write_config(tmp_path / "a-config.toml", listen=f"127.0.0.1:{free_udp_port()}",
                       codecs=["PCMU"],  # extra follows the [audio] table's last line
                       extra='dtmf_mode = "rfc4733"\n[control]\nenabled = false\n')
    a = softphone("call", f"sip:uas@127.0.0.1:{uas.local_port}", "--scenario", str(path),
                  "--config", str(cfg))
    assert a.wait_exit(30) == 1, a.diagnostics()
    result = uas.wait(15)
    assert result.ok, result.explain()
    assert [(e["result"], e.get("message")) for e in steps(a)] == [
        ("failed", "no 180/183 within 0.5 s"), ("passed", None),
        ("failed", "dtmf: cannot send DTMF: telephone-event was not negotiated"),
        ("failed", "hold: 488 Not Acceptable Here"), ("passed", None),
        ("failed", "resume: 488 Not Acceptable Here"), ("passed", None)], steps(a)


def test_reject_and_expected_statuses(softphone, tmp_path):
    port = free_udp_port()
    callee = scenario(tmp_path, "callee", """
[[steps]]
step = "ring"
seconds = 0.2
[[steps]]
step = "reject"
status = 486
""")
    b = softphone("answer", "--scenario", str(callee), "--max-calls", "3",
                  "--config", str(loopback(tmp_path, "b", port)))
    b.wait_event("listening", timeout=15)
    busy = scenario(tmp_path, "busy", """
[[steps]]
step = "expect_ringing"
[[steps]]
step = "expect_status"
status = [486, 600]
""")
    a = softphone("call", f"sip:x@127.0.0.1:{port}", "--scenario", str(busy),
                  "--config", str(loopback(tmp_path, "a1")))
    assert a.wait_exit(20) == 0, a.diagnostics()
    assert steps(a)[1]["value"] == "486 Busy Here"
    # without --events jsonl: the human verdict lines the README shows, on stdout, and the
    # failure on stderr
    answered = scenario(tmp_path, "answered", "[[steps]]\nstep = \"expect_answer\"\n"
                                              "[[steps]]\nstep = \"hangup\"\n")
    a2 = softphone("call", f"sip:x@127.0.0.1:{port}", "--scenario", str(answered),
                   "--config", str(loopback(tmp_path, "a2")), events=False)
    assert a2.wait_exit(20) == 1, a2.diagnostics()
    assert a2.events == []
    verdicts = [line for line in a2.other_stdout if re.match(r"(call|scenario) ", line)]
    time = r"\d+\.\d\d s"
    expected = [
        rf"call 1 step 1/2 expect_answer: failed: the call has ended: rejected \(486 Busy "
        rf"Here\) \({time}\)",
        rf"call 1 step 2/2 hangup: skipped: the call had ended \({time}\)",
        rf"call 1 failed \(step 1 expect_answer: the call has ended: rejected \(486 Busy "
        rf"Here\)\) in {time}",
        rf"scenario answered: 1 call, 0 passed, 1 failed in {time}"]
    assert len(verdicts) == len(expected), a2.other_stdout
    for line, pattern in zip(verdicts, expected):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert "softphone: scenario answered: 1 of 1 call failed" in a2.stderr_text()
    wrong = scenario(tmp_path, "wrong", '[[steps]]\nstep = "expect_status"\nstatus = 603\n')
    a3 = softphone("call", f"sip:x@127.0.0.1:{port}", "--scenario", str(wrong),
                   "--config", str(loopback(tmp_path, "a3")))
    assert a3.wait_exit(20) == 1, a3.diagnostics()
    assert steps(a3)[0]["message"] == "got 486 Busy Here, expected 603"
    assert b.wait_exit(20) == 0, b.diagnostics()
    assert [e["result"] for e in b.events if e["event"] == "call_verdict"] == ["passed"] * 3


def test_many_calls_run_concurrently_with_one_testcase_each(softphone, tmp_path):
    port = free_udp_port()
    callee = scenario(tmp_path, "callee", """
[[steps]]
step = "answer"
[[steps]]
step = "play"
tone = 800
duration = 1.5
[[steps]]
step = "hangup"
""")
    caller = scenario(tmp_path, "caller", """
[[steps]]
step = "expect_answer"
[[steps]]
step = "expect_tone"
frequency = 800
duration = 0.5
[[steps]]
step = "expect_hangup"
""")
    b = softphone("answer", "--scenario", str(callee), "--max-calls", "3", "--junit",
                  str(tmp_path / "b.xml"), "--config", str(loopback(tmp_path, "b", port)))
    b.wait_event("listening", timeout=15)
    a = softphone("call", f"sip:x@127.0.0.1:{port}", "--scenario", str(caller), "--repeat",
                  "3", "--rate", "4", "--junit", str(tmp_path / "a.xml"),
                  "--config", str(loopback(tmp_path, "a")))
    assert a.wait_exit(40) == 0, a.diagnostics()
    assert b.wait_exit(20) == 0, b.diagnostics()
    verdicts = [e for e in a.events if e["event"] == "call_verdict"]
    assert sorted(v["call"] for v in verdicts) == [1, 2, 3]
    # --rate 4: the calls start 0.25 s apart (never sooner; later only by the loop's delay,
    # far less than a call lasts, which is what one-after-the-other would take)
    starts = [e["t"] for e in a.events if e["event"] == "calling"]
    assert len(starts) == 3, starts
    for n, t in enumerate(starts):
        assert n / 4 - 0.05 <= t - starts[0] <= n / 4 + 0.5, starts
    assert a.find_event("summary")["passed"] == 3
    # concurrent: the third call was answered before the first one ended
    answered = [e["t"] for e in b.events if e["event"] == "answered"]
    ended = [e["t"] for e in b.events if e["event"] == "ended"]
    assert len(answered) == 3 and answered[2] < ended[0], (answered, ended)
    for report in ("a.xml", "b.xml"):
        cases = check_junit(tmp_path / report).findall("testsuite/testcase")
        assert len(cases) == 3 and all(c.find("failure") is None for c in cases)


# ============================================================================ real peers
def test_baresip_answering_with_a_tone_file(softphone, tmp_path):
    """baresip (perf8k: auto answer, PCMU/PCMA, aufile source tone8k.wav: 440 Hz and
    1000 Hz taking turns every 0.5 s)."""
    with Baresip("perf8k", tmp_path, sip_trace=False) as bs:
        bs.wait_for(r"baresip is ready|Listening", timeout=10)
        good = scenario(tmp_path, "good", """
[[steps]]
step = "expect_answer"
[[steps]]
step = "expect_codec"
codec = ["PCMU", "PCMA"]
[[steps]]
step = "expect_tone"
frequency = 440
duration = 0.4
[[steps]]
step = "expect_tone"
frequency = 1000
duration = 0.4
[[steps]]
step = "hangup"
""")
        wrong = scenario(tmp_path, "wrong", """
[[steps]]
step = "expect_answer"
[[steps]]
step = "expect_tone"
frequency = 440
duration = 1
within = 2.5
""")
        runs = {}
        for path, status in ((good, 0), (wrong, 1)):
            runs[path.stem] = a = softphone("call", bs.uri, "--scenario", str(path),
                                            "--config", str(loopback(tmp_path, path.stem)))
            assert a.wait_exit(30) == status, a.diagnostics()
    assert re.match(r"1000\.\d Hz at -15\.\d dBFS", steps(runs["good"])[3]["value"])
    # 440 Hz is there, but never for a whole second: the message says for how long
    message = steps(runs["wrong"])[1]["message"]
    assert re.search(r"heard (440|1000) Hz at -15\.\d dBFS for 1\.\d\d s within 2\.5 s",
                     message), message


def test_sipp_uas_sending_rfc4733_digits(softphone, tmp_path):
    for n in (1, 2, 3):
        assert (SIPP_PCAPS / f"dtmf_2833_{n}.pcap").exists(), "sip-tester's DTMF captures"
    uas = Sipp("uas_dtmf", tmp_path, media_port=free_port_block(4, udp=True, tcp=False),
               timeout=20).start()
    try:
        path = scenario(tmp_path, "digits", """
[[steps]]
step = "expect_answer"
[[steps]]
step = "expect_dtmf"
digits = "123"
within = 5
[[steps]]
step = "hangup"
""")
        a = softphone("call", f"sip:uas@127.0.0.1:{uas.local_port}", "--scenario", str(path),
                      "--config", str(loopback(tmp_path, "a")))
        assert a.wait_exit(30) == 0, a.diagnostics()
        assert steps(a)[1]["value"] == "got 123"
    finally:
        result = uas.wait(15)
    assert result.ok, result.explain()


def test_through_kamailio_with_digest_auth(kamailio, softphone, tmp_path):
    callee = scenario(tmp_path, "callee", """
[[steps]]
step = "expect_incoming"
from = "sip:1001@*"
[[steps]]
step = "answer"
[[steps]]
step = "play"
tone = 700
duration = 5
wait = false
[[steps]]
step = "expect_hangup"
""")
    caller = scenario(tmp_path, "caller", """
[[steps]]
step = "expect_answer"
[[steps]]
step = "expect_tone"
frequency = 700
duration = 0.8
[[steps]]
step = "hangup"
""")
    b = softphone("answer", "--scenario", str(callee), "--max-calls", "1", "--config",
                  str(write_config(tmp_path / "b.toml", kamailio, "1002")))
    b.wait_event("registered", timeout=15)
    a = softphone("call", f"sip:1002@{kamailio.domain}", "--scenario", str(caller),
                  "--config", str(write_config(tmp_path / "a.toml", kamailio, "1001")))
    assert a.wait_exit(30) == 0, a.diagnostics()
    assert b.wait_exit(20) == 0, b.diagnostics()
    assert a.find_event("registered") is not None  # the digest round was done
    assert steps(b)[0]["value"].startswith("from sip:1001@")


# ============================================================================ bad input
@pytest.mark.parametrize("args, text, message", [
    (("call", "sip:x@127.0.0.1:9"), '[[steps]]\nstep = "expect_answer"\n[[steps]]\n'
     'step = "expect_tone"\nfrequency = "high"\n',
     "scenario error: {path}: steps[2] (expect_tone): frequency: must be a frequency in Hz"),
    (("answer",), '[[steps]]\nstep = "expect_answer"\n',
     "scenario error: {path}: steps[1] (expect_answer): only for softphone call scenarios"),
    (("call", "sip:x@127.0.0.1:9", "--duration", "1"), '[[steps]]\nstep = "hangup"\n',
     "call: --duration cannot go with --scenario"),
    (("answer", "--auto"), '[[steps]]\nstep = "answer"\n',
     "answer: --auto cannot go with --scenario"),
    (("call", "sip:x@127.0.0.1:9", "--rate", "2"), '[[steps]]\nstep = "hangup"\n',
     "call: --rate needs --repeat"),
    (("call", "sip:x@127.0.0.1:9"), '[[steps]]\nstep = "expect_answer"\n[[steps]]\n'
     'step = "play"\nfile = "{dir}/not-audio.wav"\n',
     "scenario error: {path}: steps[2] (play): file: cannot read"),
])
def test_bad_scenarios_and_flags_exit_2_before_anything_starts(softphone, tmp_path, args,
                                                               text, message):
    (tmp_path / "not-audio.wav").write_text("this is not a WAV file\n" * 20)
    path = scenario(tmp_path, "bad", text.replace("{dir}", str(tmp_path)))
    p = softphone(*args, "--scenario", str(path), "--config", str(loopback(tmp_path, "x")))
    assert p.wait_exit(20) == 2, p.diagnostics()
    assert f"softphone: {message.replace('{path}', str(path))}" in p.stderr_text(), \
        p.stderr_text()
    assert p.find_event("listening") is None  # nothing started


def test_junit_without_scenario_is_refused(softphone, tmp_path):
    p = softphone("call", "sip:x@127.0.0.1:9", "--junit", str(tmp_path / "r.xml"),
                  "--config", str(loopback(tmp_path, "x")))
    assert p.wait_exit(20) == 2 and "call: --junit needs --scenario" in p.stderr_text()


def test_transfer_step_succeeds_and_fails_with_the_status(softphone, tmp_path):
    """A transfers B (REFER, RFC 3515) to C: the step passes when C answers B's new call;
    to a C that is busy, it fails with the 486 the NOTIFY's sipfrag carries."""
    port_b, port_c, port_busy = free_udp_port(), free_udp_port(), free_udp_port()
    b = softphone("answer", "--auto", "--max-calls", "2",
                  "--config", str(loopback(tmp_path, "b", port_b)))
    c = softphone("answer", "--auto", "--config", str(loopback(tmp_path, "c", port_c)))
    busy = scenario(tmp_path, "busy", '[[steps]]\nstep = "reject"\nstatus = 486\n')
    d = softphone("answer", "--scenario", str(busy), "--max-calls", "1",
                  "--config", str(loopback(tmp_path, "d", port_busy)))
    for p in (b, c, d):
        p.wait_event("listening", timeout=15)
    for target, status in ((port_c, 0), (port_busy, 1)):
        path = scenario(tmp_path, f"t{target}", f"""
[[steps]]
step = "expect_answer"
[[steps]]
step = "transfer"
target = "sip:c@127.0.0.1:{target}"
within = 15
""")
        a = softphone("call", f"sip:b@127.0.0.1:{port_b}", "--scenario", str(path),
                      "--config", str(loopback(tmp_path, f"a{target}")))
        assert a.wait_exit(40) == status, a.diagnostics() + b.diagnostics()
        result = steps(a)[1]
        if status == 0:
            assert result["value"] == f"transferred to sip:c@127.0.0.1:{target}", result
            assert c.wait_event("answered", timeout=10)  # B's new call reached C
        else:
            assert result["message"].startswith(
                f"the transfer to sip:c@127.0.0.1:{target} failed: 486"), result
