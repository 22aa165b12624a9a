"""Puts tests/fuzz on sys.path and prints the long fuzz run's figures at the end."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets  # noqa: E402


def pytest_terminal_summary(terminalreporter) -> None:
    if targets.SUMMARY:
        terminalreporter.section("fuzz figures")
        for line in targets.SUMMARY:
            terminalreporter.write_line(line)
