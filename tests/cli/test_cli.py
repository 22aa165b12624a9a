"""The command line as a user meets it: help, bad usage, bad config (exit statuses)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softphone", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [(), ("register",), ("call",), ("answer",)])
def test_help_for_every_command(args):
    out = run(*args, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: softphone" in out.stdout and "--config" in out.stdout


def test_bad_usage_exits_2():
    out = run("call")  # URI missing
    assert out.returncode == 2 and "URI" in out.stderr
    out = run("answer", "--max-calls", "zero")
    assert out.returncode == 2 and "--max-calls" in out.stderr


def test_bad_config_names_file_key_and_reason_without_the_password(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[accounts]]\naor = "sip:1001@x"\ntransport = "sctp"\npassword = "hunter2"\n')
    out = run("register", "--config", str(cfg))
    assert out.returncode == 2
    assert f"{cfg}: accounts[0].transport: must be one of udp, tcp, tls" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout


def test_register_without_an_account_is_a_usage_error(tmp_path):
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    out = run("register", "--config", str(cfg))
    assert out.returncode == 2 and "no account configured" in out.stderr


def test_version_prints_the_package_version():
    from softphone import __version__

    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"softphone {__version__}"
    assert __version__ and __version__[0].isdigit()


def test_readme_documents_every_event_and_its_fields():
    """Every event the bus carries (ua.events.EVENT_TYPES) is named in the README's
    Events section, with each of its fields: the JSON lines are a contract."""
    import dataclasses
    from pathlib import Path

    from softphone.ua.events import EVENT_TYPES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("### Events")
    section = readme[start:readme.index("\n### ", start + 1)]
    for name, cls in EVENT_TYPES.items():
        assert f"`{name}`" in section, f"event {name} is not in the README"
        for f in dataclasses.fields(cls):
            key = f.name.rstrip("_")  # from_ is "from" in JSON
            if key != "t":
                assert f"`{key}`" in section, f"{name}: field {key} is not in the README"
