"""Coverage-guided run of one fuzz target under atheris (libFuzzer).

    python tests/fuzz/run_atheris.py TARGET COUNTERS.json [libFuzzer flags: -runs=N CORPUS ...]

The softphone modules are instrumented for coverage feedback (the pure ones: a mypyc
build has no bytecode to instrument); the target's counters are
written to COUNTERS.json every few thousand inputs and when the run ends. Any exception
other than the parser's own is a crash: libFuzzer prints it, saves the input as
``crash-*`` and exits non-zero.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

# coverage comes from instrumented bytecode: the pure SIP modules, not the compiled ones
os.environ["SOFTPHONE_PURE"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["softphone"]):
    import softphone.media.rtp  # noqa: F401 - instrument the lazily imported media modules too
    import softphone.media.stats  # noqa: F401
    import softphone.media.playout  # noqa: F401
    import softphone.media.dtmf  # noqa: F401
    import targets


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    target = targets.TARGETS[name]
    runs = next((int(a[6:]) for a in sys.argv[3:] if a.startswith("-runs=")), 0)
    seen = 0

    def one_input(data: bytes) -> None:
        nonlocal seen
        target(data)
        seen += 1
        if seen % 5000 == 0 or seen == runs:  # libFuzzer exits without Python's atexit
            targets.dump_counters(out)

    atheris.Setup([sys.argv[0], *sys.argv[3:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
