#!/usr/bin/env python3
"""Compile the pure SIP core (softphone.sip.COMPILED) with mypyc into softphone/sip/_compiled.

Run by ``make setup`` after the pip install; the sources stay plain typed Python and the
package falls back to them while this build is absent or stale (see softphone/sip/__init__).
Writes the stamp last, so an interrupted build is never used.

    python softphone/native.py [--jobs N]   (make setup runs it)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "mypyc"
if __name__ == "__main__":  # run as a script (make setup): the package of this checkout
    sys.path.insert(0, str(ROOT))

from softphone.sip import COMPILED, COMPILED_DIR, source_stamp  # noqa: E402


def compile_into(lib: Path, jobs: int) -> None:
    """mypyc → C → one extension per module and the group's shared library, under ``lib``
    (run in a child process: its compiler chatter goes to the log, not the terminal)."""
    from mypyc.build import mypycify
    from setuptools import setup

    os.chdir(ROOT)  # mypyc names modules by their path from here
    sources = [f"softphone/sip/{name}.py" for name in COMPILED]
    extensions = mypycify(sources, opt_level="3", group_name="softphone.sip._compiled",
                          target_dir=str(BUILD / "c"))
    setup(name="softphone-native", ext_modules=extensions,
          script_args=["build_ext", "--build-lib", str(lib), "--build-temp", str(BUILD / "tmp"),
                       "--parallel", str(jobs)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="C compilers run at once (default: one per CPU)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    lib = BUILD / "lib"
    if args.inner:
        compile_into(lib, args.jobs)
        return 0
    try:
        import mypyc  # noqa: F401
        import setuptools  # noqa: F401
    except ImportError as exc:
        print(f"softphone/native.py: {exc.name} is missing (pip install mypy setuptools)",
              file=sys.stderr)
        return 1
    started = time.monotonic()
    shutil.rmtree(COMPILED_DIR, ignore_errors=True)
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    log_path = BUILD / "build.log"
    with open(log_path, "wb") as log:
        done = subprocess.run([sys.executable, __file__, "--inner", "--jobs", str(args.jobs)],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    built = sorted((lib / "softphone" / "sip").glob("*.so"))
    if done.returncode != 0 or len(built) != len(COMPILED) + 1:
        # each module, and the group's shared library
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        print("\n".join(tail), file=sys.stderr)
        print(f"softphone/native.py: the build failed (exit {done.returncode}, "
              f"{len(built)} libraries); full log: {log_path}", file=sys.stderr)
        return 1
    COMPILED_DIR.mkdir()
    for path in built:
        shutil.copy2(path, COMPILED_DIR / path.name)
    (COMPILED_DIR / "SOURCES").write_text(source_stamp())
    print(f"softphone/native.py: compiled {', '.join(COMPILED)} in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
