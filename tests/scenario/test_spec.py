"""Scenario files are checked whole before anything starts: every mistake names the file,
the step (counted from 1) and the key, and says what would be right."""

from __future__ import annotations

import pytest

from softphone.scenario import STEP_KINDS, ScenarioError, load_scenario, parse_scenario


def write(tmp_path, text: str, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error(tmp_path, text: str, side: str = "call") -> str:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, side)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_a_good_scenario_is_read_with_defaults(tmp_path):
    (tmp_path / "prompt.wav").write_bytes(b"RIFF")  # existence is checked here; decoding by
    path = write(tmp_path, """                      # the CLI (probe_audio_file)
name = "ivr"
[[steps]]
step = "expect_answer"
within = 5
[[steps]]
step = "expect_tone"
frequency = 425
[[steps]]
step = "play"
file = "prompt.wav"
[[steps]]
step = "dtmf"
digits = "1,2#"
name = "choose sales"
on_failure = "continue"
[[steps]]
step = "hangup"
""")
    s = load_scenario(path, "call")
    assert s.name == "ivr" and s.side == "call" and [st.index for st in s.steps] == [1, 2, 3, 4, 5]
    tone = s.steps[1]
    assert tone["frequency"] == 425.0 and tone["level"] == -40.0 and tone["duration"] == 1.0
    assert tone["within"] == 10.0 and tone["tolerance"] is None
    assert s.steps[2]["file"] == str(tmp_path / "prompt.wav")  # relative to the scenario
    assert s.steps[3].label == "choose sales" and s.steps[3].on_failure == "continue"
    assert s.steps[3]["digits"] == "1,2#" and s.steps[0].on_failure == "hangup"


@pytest.mark.parametrize("text, where, message", [
    ('[[steps]]\nstep = "expect_tnoe"\n', "steps[1]: step",
     "unknown step 'expect_tnoe' (did you mean 'expect_tone'?)"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "expect_tone"\nfrequency = 5\n',
     "steps[2] (expect_tone): frequency", "must be a frequency in Hz, 20 to 20000 (got 5)"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "expect_tone"\n',
     "steps[2] (expect_tone): frequency", "missing (Hz)"),
    ('[[steps]]\nstep = "expect_answer"\nwithin = "soon"\n',
     "steps[1] (expect_answer): within", "must be a number of seconds (got 'soon')"),
    ('[[steps]]\nstep = "expect_answer"\nhow = 1\n',
     "steps[1] (expect_answer): how", "unknown key (expect_answer takes: within)"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "play"\nfile = "nope.wav"\n',
     "steps[2] (play): file", "no such file:"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "play"\ntone = 440\n',
     "steps[2] (play): duration", "a tone needs a duration"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "play"\n',
     "steps[2] (play)", "give exactly one of file or tone"),
    ('[[steps]]\nstep = "dtmf"\ndigits = "12"\n', "steps[1] (dtmf)",
     "the call is not answered yet at this step; put an expect_answer step before it"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "dtmf"\ndigits = "1Z"\n',
     "steps[2] (dtmf): digits", "must be DTMF digits"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "expect_dtmf"\ndigits = "1,2"\n',
     "steps[2] (expect_dtmf): digits", "a pause (',') cannot be received"),
    ('[[steps]]\nstep = "answer"\n', "steps[1] (answer)", "only for softphone answer"),
    ('[[steps]]\nstep = "hangup"\n[[steps]]\nstep = "wait"\nseconds = 1\n', "steps[2] (wait)",
     "the call is over by now"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "expect_ringing"\n',
     "steps[2] (expect_ringing)", "the call is already answered here"),
    ('[[steps]]\nstep = "expect_status"\nstatus = [486, 99]\n', "steps[1] (expect_status): status",
     "must be a final status 300-699 (got 99)"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "expect_codec"\ncodec = "GSM"\n',
     "steps[2] (expect_codec): codec", "must be one of PCMU, PCMA, G722, opus"),
    ('[[steps]]\nstep = "expect_answer"\n[[steps]]\nstep = "record"\nfile = "/nonexistent/x.wav"\n'
     'seconds = 1\n', "steps[2] (record): file", "no such directory: /nonexistent"),
    ('[[steps]]\nstep = "expect_answer"\non_failure = "panic"\n',
     "steps[1] (expect_answer): on_failure", "must be one of hangup, continue"),
    ('steps = []\n', "steps", "a scenario needs at least one [[steps]] table"),
    ('name = "x"\nstep = "wait"\n', "step", "unknown key (a scenario has name, on_failure, steps)"),
    ('[[steps]]\nseconds = 1\n', "steps[1]: step", "missing: say which step this is"),
    ('[[steps\n', "", "not valid TOML"),
])
def test_mistakes_name_file_step_and_key(tmp_path, text, where, message):
    got = error(tmp_path, text)
    assert f": {where}: " in got or not where, got
    assert message in got, got


def test_answer_side_steps_and_headers(tmp_path):
    s = parse_scenario({"steps": [
        {"step": "expect_incoming", "from": "sip:1001@*", "headers": {"X-Test": "a*"}},
        {"step": "ring", "seconds": 1}, {"step": "answer"}, {"step": "expect_hangup"}]},
        "answer")
    assert s.steps[0]["headers"] == {"X-Test": "a*"} and s.steps[0]["to"] is None
    with pytest.raises(ScenarioError, match="only for softphone call scenarios"):
        parse_scenario({"steps": [{"step": "expect_answer"}]}, "answer")
    with pytest.raises(ScenarioError, match="put an answer step before it"):
        parse_scenario({"steps": [{"step": "expect_tone", "frequency": 440}]}, "answer")
    with pytest.raises(ScenarioError, match=r"headers: 'bad name' is not a header name"):
        parse_scenario({"steps": [{"step": "expect_incoming", "headers": {"bad name": "x"}}]},
                       "answer")


def test_every_step_kind_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Test scenarios"):]
    for name, kind in STEP_KINDS.items():
        assert f"`{name}`" in section, name
        for key in kind.keys:
            assert f"`{key.name}`" in section, (name, key.name)


def test_the_readme_examples_are_valid_scenarios(tmp_path):
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Test scenarios"):readme.index("## The TUI")]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    (tmp_path / "message.wav").write_bytes(b"RIFF")
    names = []
    for block in blocks:
        data = tomllib.loads(block)
        side = "answer" if any(s["step"] == "answer" for s in data["steps"]) else "call"
        names.append(parse_scenario(data, side, source=tmp_path / "x.toml").name)
    assert names == ["ivr-menu", "voicemail-deposit", "trunk-inbound"]
