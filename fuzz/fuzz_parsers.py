"""Coverage-guided fuzzing of the request parsers with atheris (libFuzzer).

    make fuzz                       # FUZZ_SECONDS=60 by default
    python -m fuzz.fuzz_parsers -max_total_time=60 CORPUS_DIR

Any exception other than the documented refusals is a crash; libFuzzer writes
the input that caused it next to ``-artifact_prefix``. Interesting inputs found
can be copied into tests/corpus/ so that ``make test`` replays them.
"""

from __future__ import annotations

import sys

import atheris

from fuzz import targets  # noqa: E402  (imported first, instrumented below)


def main() -> None:
    # Instrument every loaded Python function (our parsers, urllib.parse, json, base64, ...).
    atheris.instrument_all()
    atheris.Setup(sys.argv, targets.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
