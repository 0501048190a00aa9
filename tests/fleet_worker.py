"""One process of a fleet, driven by tests/test_fleet.py over stdin and stdout.

Usage: ``python fleet_worker.py MEMCACHED_URL SOURCE_FILE``

The worker configures dogpile_warm's default region on the shared memcached
and defines ``fleet:read_source``, a function tagged ``fleet`` whose value is
the text of SOURCE_FILE. While ``SOURCE_FILE.hold`` exists, the function
pauses after reading the file, so a test can invalidate during a computation.

Protocol: one command per input line; every answer is one line starting
with ``@ `` (anything else on stdout is diagnostics):

    (start)            -> @ ready
    read               -> @ computing <text>   (only when the function runs)
                          @ value <text> <computations so far>
    invalidate <tag>   -> @ invalidated <number of tags>
    quit               -> @ bye, then the process exits
    anything failing   -> @ error <exception>
"""

from __future__ import annotations

import sys
from pathlib import Path

import dogpile_warm
from dogpile_warm.testing import wait_until

FUNCTION_NAME = "fleet:read_source"
TAG = "fleet"
HOLD_TIMEOUT = 15.0  # seconds; the test process fails long before


def answer(text: str) -> None:
    sys.stdout.write(f"@ {text}\n")
    sys.stdout.flush()


def main(url: str, source_path: str) -> int:
    source = Path(source_path)
    hold = source.with_name(source.name + ".hold")
    computations = 0

    dogpile_warm.configure(
        "default",
        "dogpile.cache.pymemcache",
        arguments={"url": url, "distributed_lock": True},
    )

    @dogpile_warm.warmable(ttl=600, tags={TAG}, name=FUNCTION_NAME, refresh_ahead=None)
    def read_source() -> str:
        nonlocal computations
        computations += 1
        text = source.read_text()
        answer(f"computing {text}")
        wait_until(lambda: not hold.exists(), HOLD_TIMEOUT, interval=0.005, message=f"{hold} gone")
        return text

    answer("ready")
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        try:
            if command == "read":
                value = read_source()
                answer(f"value {value} {computations}")
            elif command == "invalidate":
                answer(f"invalidated {dogpile_warm.invalidate_by_tags(argument)}")
            elif command == "quit":
                answer("bye")
                return 0
            else:
                answer(f"error unknown command {line.strip()!r}")
        except Exception as exc:
            answer(f"error {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
