#!/usr/bin/env python3
"""Compile the pure SIP core (softphone.sip.COMPILED) with mypyc into softphone/sip/_compiled.

Run by ``make setup`` after the pip install; the sources stay plain typed Python and the
package falls back to them while this build is absent or stale (see softphone/sip/__init__).
Writes the stamp last, so an interrupted build is never used.

    tools/build_native.py [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "mypyc"
sys.path.insert(0, str(ROOT))

from softphone.sip import COMPILED, COMPILED_DIR, source_stamp  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="C compilers run at once (default: one per CPU)")
    args = ap.parse_args(argv)
    try:
        from mypyc.build import mypycify
        from setuptools import setup
    except ImportError as exc:
        print(f"tools/build_native.py: {exc.name} is missing (pip install mypy setuptools)",
              file=sys.stderr)
        return 1
    started = time.monotonic()
    shutil.rmtree(COMPILED_DIR, ignore_errors=True)
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    sources = [f"softphone/sip/{name}.py" for name in COMPILED]
    os.chdir(ROOT)  # mypyc names modules by their path from here
    extensions = mypycify(sources, opt_level="3",
                          group_name="softphone.sip._compiled", target_dir=str(BUILD / "c"))
    setup(name="softphone-native", ext_modules=extensions,
          script_args=["-q", "build_ext", "--build-lib", str(BUILD / "lib"),
                       "--build-temp", str(BUILD / "tmp"), "--parallel", str(args.jobs)])
    built = sorted((BUILD / "lib" / "softphone" / "sip").glob("*.so"))
    if len(built) != len(COMPILED) + 1:  # each module, and the group's shared library
        print(f"tools/build_native.py: expected {len(COMPILED) + 1} libraries, got "
              f"{[p.name for p in built]}", file=sys.stderr)
        return 1
    COMPILED_DIR.mkdir()
    for path in built:
        shutil.copy2(path, COMPILED_DIR / path.name)
    (COMPILED_DIR / "SOURCES").write_text(source_stamp())
    print(f"tools/build_native.py: compiled {', '.join(COMPILED)} in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
