"""edit_config: each change kind edits only its keys; validation, backup, atomic write."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.config import (AddAccount, Config, ConfigError, Remove, RemoveAccount, Set,
                              edit_config, load_config, set_config_value)

PASSWORD = "hunter2-Sup3rSecret"

BASE = '''# my phone
[[accounts]]
name = "office"   # the PBX
aor = "sip:1001@pbx.example.com"
register = true            # explicit default
expires = 600

# the lab account, below
[[accounts]]
name = "lab"
aor = "sip:2001@127.0.0.1:5999"

# ---- network
[network]
listen = "0.0.0.0:5060"
max_calls = 8   # default, written anyway

[audio]
  ptime = 20
  codecs = ["PCMU", "PCMA"]

# trailing notes
'''
OFFICE = ('[[accounts]]\nname = "office"   # the PBX\naor = "sip:1001@pbx.example.com"\n'
          'register = true            # explicit default\nexpires = 600\n')
LAB = '[[accounts]]\nname = "lab"\naor = "sip:2001@127.0.0.1:5999"\n'


@pytest.fixture
def conf(tmp_path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE, encoding="utf-8")
    return path


def edited(path: Path, *changes) -> str:
    config = edit_config(path, changes)
    assert config == load_config(path) and config.source == path
    return path.read_text(encoding="utf-8")


def one_replaced(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


# --------------------------------------------------------------------------- tables


def test_set_existing_key_keeps_its_comment(conf):
    assert edited(conf, Set("network.max_calls", 4)) == one_replaced(
        "max_calls = 8   # default", "max_calls = 4   # default")


def test_set_new_key_goes_after_the_tables_last_key(conf):
    assert edited(conf, Set("network.rtp_timeout", 10)) == one_replaced(
        "written anyway\n", "written anyway\nrtp_timeout = 10\n")


def test_set_new_key_takes_the_tables_indentation(conf):
    assert edited(conf, Set("audio.dtmf", False)) == one_replaced(
        '"PCMA"]\n', '"PCMA"]\n  dtmf = false\n')


def test_set_in_a_missing_table_appends_it(conf):
    assert edited(conf, Set("sip.t1_ms", 250)) == BASE + "\n[sip]\nt1_ms = 250\n"


def test_set_list_and_float_values(conf):
    text = edited(conf, Set("audio.codecs", ("opus", "PCMU")), Set("network.rate_limit", 2.5))
    assert text == one_replaced('["PCMU", "PCMA"]', '["opus", "PCMU"]').replace(
        "written anyway\n", "written anyway\nrate_limit = 2.5\n")


def test_remove_key_takes_its_line(conf):
    assert edited(conf, Remove("network.max_calls")) == one_replaced(
        "max_calls = 8   # default, written anyway\n", "")


def test_remove_of_an_unset_key_writes_nothing(conf):
    before = conf.stat().st_mtime_ns
    assert edited(conf, Remove("network.public_address"), Remove("sip.t1_ms")) == BASE
    assert conf.stat().st_mtime_ns == before
    assert not conf.with_name("config.toml.bak").exists()


# --------------------------------------------------------------------------- accounts


def test_set_account_keys(conf):
    assert edited(conf, Set("accounts[1].expires", 300)) == one_replaced(
        '5999"\n', '5999"\nexpires = 300\n')
    conf.write_text(BASE)
    assert edited(conf, Set("accounts[0].name", "work")) == one_replaced(
        'name = "office"   # the PBX', 'name = "work"   # the PBX')


def test_remove_account_key(conf):
    assert edited(conf, Remove("accounts[0].register")) == one_replaced(
        "register = true            # explicit default\n", "")


def test_add_account_goes_after_the_last_block(conf):
    assert edited(conf, AddAccount({"name": "new", "aor": "sip:3001@h"})) == one_replaced(
        LAB, LAB + '\n[[accounts]]\nname = "new"\naor = "sip:3001@h"\n')


def test_add_first_account(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("# mine\n[audio]\nptime = 30\n")
    assert edited(path, AddAccount({"aor": "sip:1@h", "register": False})) == \
        '# mine\n[audio]\nptime = 30\n\n[[accounts]]\naor = "sip:1@h"\nregister = false\n'


def test_remove_first_account_keeps_the_comments_after_it(conf):
    assert edited(conf, RemoveAccount(0)) == one_replaced(OFFICE, "")


def test_remove_last_account_keeps_the_comments_after_it(conf):
    assert edited(conf, RemoveAccount(1)) == one_replaced(LAB, "")


def test_remove_every_account(conf):
    assert edited(conf, RemoveAccount(0), RemoveAccount(0)) == \
        BASE.replace(OFFICE, "").replace(LAB, "")
    assert load_config(conf).accounts == ()


def test_changes_apply_in_order(conf):
    text = edited(conf, RemoveAccount(0), Set("accounts[0].expires", 120),
                  AddAccount({"name": "b", "aor": "sip:b@h"}), Remove("accounts[1].name"))
    assert [(a.name, a.expires) for a in load_config(conf).accounts] == \
        [("lab", 120), ("account2", 600)]
    assert text == ("# my phone\n\n# the lab account, below\n" + LAB + "expires = 120\n"
                    '\n[[accounts]]\naor = "sip:b@h"\n'
                    "\n# ---- network\n" + BASE.partition("# ---- network\n")[2])


def test_inline_array_of_accounts(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('accounts = [{aor = "sip:a@h"}, {aor = "sip:b@h"}]  # short\n')
    edited(path, Set("accounts[1].name", "bee"), RemoveAccount(0),
           AddAccount({"aor": "sip:c@h"}))
    assert [a.aor for a in load_config(path).accounts] == ["sip:b@h", "sip:c@h"]
    assert load_config(path).accounts[0].name == "bee"
    assert path.read_text().endswith("]  # short\n")


@pytest.mark.parametrize("change", [Set("accounts[2].name", "x"), Remove("accounts[5].name"),
                                    RemoveAccount(2)])
def test_no_such_account(conf, change):
    with pytest.raises(ConfigError) as info:
        edit_config(conf, [change])
    assert info.value.source == conf and info.value.key.startswith("accounts[")
    assert "no such account (the file has 2)" in str(info.value)
    assert conf.read_text() == BASE


def test_bad_key_paths_are_programming_errors(conf):
    for key in ("network", "accounts.name", "accounts[x].name", "a.b.c"):
        with pytest.raises(ValueError):
            edit_config(conf, [Set(key, 1)])
    with pytest.raises(ValueError, match="use Remove"):
        edit_config(conf, [Set("ui.theme", None)])
    assert conf.read_text() == BASE


def test_a_value_where_a_table_belongs(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("network = 3\n")
    with pytest.raises(ConfigError) as info:
        edit_config(path, [Set("network.listen", "127.0.0.1:5060")])
    assert str(info.value) == f"{path}: network: is not a table"
    assert path.read_text() == "network = 3\n"


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize(("changes", "key", "reason"), [
    ([Set("audio.ptime", 25)], "audio.ptime", "must be one of 10, 20, 30, 40, 60 (got 25)"),
    ([Set("network.max_calls", 4), Set("network.lisen", "x")], "network",
     "unknown key 'lisen' (did you mean 'listen'?)"),
    ([AddAccount({"name": "lab", "aor": "sip:9@h"})], "accounts[2].name",
     "duplicate account name 'lab' (also accounts[1])"),
    ([RemoveAccount(0), Remove("accounts[0].aor")], "accounts[0].aor", "is required"),
])
def test_a_result_that_would_not_load_writes_nothing(conf, changes, key, reason):
    with pytest.raises(ConfigError) as info:
        edit_config(conf, changes)
    assert str(info.value) == f"{conf}: {key}: {reason}"
    assert conf.read_text() == BASE
    assert sorted(p.name for p in conf.parent.iterdir()) == ["config.toml"]  # no .bak, no temp


def test_password_never_in_an_edit_error(conf):
    with pytest.raises(ConfigError) as info:
        edit_config(conf, [Set("accounts[0].password", PASSWORD),
                           Set("accounts[0].password_env", "PW")])
    assert info.value.key == "accounts[0]" and "set only one of" in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert conf.read_text() == BASE


def test_a_value_tomlkit_cannot_write(conf):
    with pytest.raises(ConfigError) as info:
        edit_config(conf, [Set("audio.ptime", object())])
    assert info.value.key == "audio.ptime"
    assert "cannot edit: ConvertError: Unable to convert" in str(info.value)
    with pytest.raises(ConfigError) as info:  # with a password about: tomlkit's text goes
        edit_config(conf, [AddAccount({"aor": "sip:a@h", "password": PASSWORD, "x": object()})])
    assert str(info.value) == f"{conf}: accounts: cannot edit: ConvertError"
    assert conf.read_text() == BASE


def test_changes_do_not_show_a_password():
    for change in (Set("accounts[0].password", PASSWORD),
                   AddAccount({"aor": "sip:a@h", "password": PASSWORD})):
        assert PASSWORD not in repr(change) and PASSWORD not in str(change)
    assert repr(Set("audio.ptime", 30)) == "Set('audio.ptime', 30)"


def test_backup_holds_the_previous_content(conf):
    edited(conf, Set("network.max_calls", 4))
    backup = conf.with_name("config.toml.bak")
    assert backup.read_text() == BASE
    first = conf.read_text()
    edited(conf, Set("network.max_calls", 5))
    assert backup.read_text() == first  # one backup: the content just replaced
    if os.name == "posix":
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert sorted(p.name for p in conf.parent.iterdir()) == ["config.toml", "config.toml.bak"]


def test_new_file_is_created_without_backup(tmp_path):
    path = tmp_path / "new" / "config.toml"
    assert edited(path, Set("ui.theme", "nord")) == '[ui]\ntheme = "nord"\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_a_symlinked_file_is_edited_through_the_link(tmp_path):
    real = tmp_path / "dotfiles" / "softphone.toml"
    real.parent.mkdir()
    real.write_text(BASE)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    edited(link, Set("network.max_calls", 4))
    assert link.is_symlink() and "max_calls = 4" in real.read_text()
    assert real.with_name("softphone.toml.bak").read_text() == BASE


def test_a_broken_file_is_reported_like_the_loader_does(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[network]\nlisten = \n')
    with pytest.raises(ConfigError) as info:
        edit_config(path, [Set("ui.theme", "nord")])
    assert str(info.value) == f"{path}: line 2, column 10: invalid TOML: Invalid value"
    assert path.read_text() == '[network]\nlisten = \n'


def test_a_file_tomlkit_would_reorder_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    text = '[[accounts]]\naor = "sip:a@h"\n\n[audio]\nptime = 30\n\n[[accounts]]\naor = "sip:b@h"\n'
    path.write_text(text)
    assert len(load_config(path).accounts) == 2  # valid TOML and a valid config, but
    with pytest.raises(ConfigError) as info:  # tomlkit would move the second block up
        edit_config(path, [Set("audio.ptime", 40)])
    assert str(info.value) == (f"{path}: cannot edit this file without changing other "
                               "lines; edit it by hand")
    assert path.read_text() == text


def test_crlf_line_ends_are_kept(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"# win\r\n[audio]\r\nptime = 30\r\n")
    edit_config(path, [Set("audio.dtmf", False), Set("ui.theme", "nord")])
    data = path.read_bytes()
    assert data.startswith(b"# win\r\n[audio]\r\nptime = 30\r\ndtmf = false\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_set_config_value_is_edit_config(conf):
    assert set_config_value(conf, "ui", "theme", "nord") == conf
    assert conf.read_text() == BASE + '\n[ui]\ntheme = "nord"\n'
    assert conf.with_name("config.toml.bak").read_text() == BASE


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_any_password_survives_an_edit(tmp_path_factory, password):
    path = tmp_path_factory.mktemp("pw") / "c.toml"
    path.write_text("# keep me\n")
    try:
        config = edit_config(path, [AddAccount({"aor": "sip:u@h", "password": password})])
    except ValueError:  # a lone surrogate cannot be written as UTF-8 TOML
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in password)
        return
    assert config.account().secret() == password
    assert load_config(path).account().secret() == password
    assert path.read_text(encoding="utf-8").startswith("# keep me\n")


def test_importing_and_loading_config_does_not_import_tomlkit():
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    code = ("import sys; from softphone.config import load_config; "
            f"load_config({str(example)!r}); print('tomlkit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_config_from_edit_equals_loaded_config(conf):
    config = edit_config(conf, [Set("audio.ptime", 40)])
    assert isinstance(config, Config) and config.audio.ptime == 40
