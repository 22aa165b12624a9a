"""A headless phone loads only what it uses: ``register`` and an idle ``answer`` never
import Textual (the TUI's) nor aiortc/PyAV (~18 MB that the first call's media loads).
Read from the interpreter's own import log (PYTHONPROFILEIMPORTTIME) over the whole run."""

from __future__ import annotations

import re

from peers.net import free_udp_port
from peers.phoneconfig import write_config

UNWANTED = ("textual", "av", "aiortc")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", re.M)


def imported(stderr: str) -> set[str]:
    names = set(IMPORT_LINE.findall(stderr))
    assert len(names) > 100, f"no import log in stderr:\n{stderr[-2000:]}"
    return names


def unwanted(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in UNWANTED)


def test_an_idle_answer_imports_neither_the_tui_nor_media(softphone, tmp_path):
    cfg = tmp_path / "answer.toml"
    cfg.write_text(f'[network]\nlisten = "127.0.0.1:{free_udp_port()}"\n'
                   f'[control]\nenabled = false\n[audio]\nbackend = "null"\n')
    phone = softphone("answer", "--auto", "--config", str(cfg), "--duration", "1",
                      env={"PYTHONPROFILEIMPORTTIME": "1"})
    phone.wait_event("listening", timeout=15)
    assert phone.wait_exit(timeout=15) == 0
    assert unwanted(imported(phone.stderr_text())) == []


def test_register_imports_neither_the_tui_nor_media(softphone, kamailio, tmp_path):
    cfg = write_config(tmp_path / "register.toml", kamailio, "1001")
    phone = softphone("register", "--config", str(cfg), "--duration", "1",
                      env={"PYTHONPROFILEIMPORTTIME": "1"})
    phone.wait_event("registered", timeout=15)
    assert phone.wait_exit(timeout=15) == 0
    assert unwanted(imported(phone.stderr_text())) == []
