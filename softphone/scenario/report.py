"""The JUnit XML report CI systems read: one testsuite per scenario, one testcase per call,
one <failure> per failed step (the Jenkins/Surefire schema allows several), the step lines
as the testcase's system-out."""

from __future__ import annotations

import datetime as _dt
import os
import socket
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .runner import CallResult
from .spec import Scenario

__all__ = ["junit_xml", "write_junit"]


def junit_xml(scenario: Scenario, results: list[CallResult], duration: float) -> bytes:
    failures = sum(1 for r in results if not r.passed)
    suites = ET.Element("testsuites", name=f"softphone {scenario.side} scenario",
                        tests=str(len(results)), failures=str(failures), errors="0",
                        time=f"{duration:.3f}")
    started = min((r.started for r in results), default=None)
    suite = ET.SubElement(suites, "testsuite", name=scenario.name, tests=str(len(results)),
                          failures=str(failures), errors="0", skipped="0",
                          time=f"{duration:.3f}", hostname=socket.gethostname())
    if started is not None:
        suite.set("timestamp", _dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"))
    if scenario.source is not None:
        suite.set("file", str(scenario.source))
    classname = f"softphone.scenario.{_dotted(scenario.name)}"
    for result in results:
        case = ET.SubElement(suite, "testcase", name=f"call {result.number} ({result.remote})",
                             classname=classname, time=f"{result.duration:.3f}")
        for step in result.failures:
            failure = ET.SubElement(case, "failure", type=step.kind,
                                    message=f"step {step.index} {step.label}: {step.message}")
            failure.text = f"step {step.index} ({step.kind}) failed after {step.elapsed:.2f} s: " \
                           f"{step.message}"
        if not result.steps:
            ET.SubElement(case, "failure", type="no-steps", message="no step ran")
        lines = [f"call-id {result.call_id}"] if result.call_id else []
        for step in result.steps:
            detail = step.message if step.result != "passed" else step.value
            lines.append(f"step {step.index} {step.label}: {step.result}"
                         + (f": {detail}" if detail else "") + f" ({step.elapsed:.2f} s)")
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(lines)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: str, scenario: Scenario, results: list[CallResult],
                duration: float) -> None:
    """Written to a temporary file beside ``path``, then renamed: never half a report."""
    data = junit_xml(scenario, results, duration)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # a report for CI to read, not a secret
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _dotted(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_") or "scenario"
