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
