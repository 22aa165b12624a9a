"""The --junit report is valid against the common JUnit schema (junit-10.xsd's rules, in
this folder), checked by a real XSD validator; and that schema is strict enough to refuse
what CI readers refuse. The end-to-end reports are validated in tests/interop."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema

from softphone.scenario import parse_scenario
from softphone.scenario.report import junit_xml
from softphone.scenario.runner import CallResult, StepResult

XSD = Path(__file__).resolve().parent / "junit-10.xsd"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def report() -> bytes:
    scenario = parse_scenario({"name": "ivr <menu> & more", "steps": [
        {"step": "expect_answer"}, {"step": "expect_dtmf", "digits": "12"},
        {"step": "hangup"}]}, "call")
    passed = CallResult(1, "a@x", "sip:ivr@127.0.0.1", 1_700_000_000.0, duration=1.5)
    passed.steps = [StepResult(1, "expect_answer", "expect_answer", "passed", "answered"),
                    StepResult(2, "expect_dtmf", "expect_dtmf", "passed", "got 12"),
                    StepResult(3, "hangup", "hangup", "passed", "hung up")]
    failed = CallResult(2, "b@x", "sip:ivr@127.0.0.1", 1_700_000_001.0, duration=5.25)
    failed.steps = [StepResult(1, "expect_answer", "expect_answer", "passed", "answered"),
                    StepResult(2, "expect_dtmf", "expect_dtmf", "failed",
                               message="got '1' of '12' within 5 s \"quoted\" <tag>",
                               elapsed=5.0),
                    StepResult(3, "hangup", "hangup", "skipped", message="step 2 failed")]
    dialled = CallResult(3, None, "sip:ivr@127.0.0.1", 1_700_000_002.0)  # no step ran
    return junit_xml(scenario, [passed, failed, dialled], 1234.5)


def test_the_report_is_valid_against_the_junit_schema(schema):
    data = report()
    schema.validate(data.decode())
    tree = schema.to_dict(data.decode())
    suite = tree["testsuite"][0]
    assert (suite["@tests"], suite["@failures"]) == ("3", "2")
    assert [len(case.get("failure", [])) for case in suite["testcase"]] == [0, 1, 1]


@pytest.mark.parametrize("bad, why", [
    ('<testsuites><testsuite name="s" tests="1" failures="0"/></testsuites>',
     "errors"),                                            # a required attribute missing
    ('<testsuites time="1.5s"><testsuite name="s" tests="0" failures="0" errors="0"/>'
     '</testsuites>', "time"),                             # not Surefire's number format
    ('<testsuites><testsuite name="s" tests="1" failures="1" errors="0"><testcase name="c">'
     '<failure message="m"><detail/></failure></testcase></testsuite></testsuites>',
     "detail"),                                            # a failure holds text only
    ('<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase>'
     '</testcase></testsuite></testsuites>', "name"),      # a testcase needs a name
    ('<testsuites><testcase name="c"/></testsuites>', "testcase"),  # not in a suite
])
def test_the_schema_refuses_what_ci_readers_refuse(schema, bad, why):
    with pytest.raises(xmlschema.XMLSchemaValidationError) as info:
        schema.validate(bad)
    assert why in str(info.value)
