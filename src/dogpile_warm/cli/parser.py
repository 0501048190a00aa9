"""The ``dogpile-warm`` command line: its subcommands, options and their checks."""

from __future__ import annotations

import argparse

from .. import __version__
from .._core.validation import check_positive_int, check_positive_number
from .._warming.snapshot import MAX_TOP_N, SNAPSHOT_KEY

__all__ = ["build_parser"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    try:
        return check_positive_int("N", value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_positive_number("N", value)
    except (TypeError, ValueError) as exc:  # TypeError: infinity or NaN
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tag_list(text: str) -> list[str]:
    tags = [t.strip() for t in text.split(",") if t.strip()]
    if not tags:
        raise argparse.ArgumentTypeError(f"no tags in {text!r}; give e.g. catalog,prices")
    return tags


_TARGET_HELP = (
    "the application's module, imported with the current directory first on sys.path; "
    ":ATTR names a CacheWarmingEngine in it (default: the process's default engine)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``dogpile-warm`` command line: one subcommand per ``COMMAND``."""
    parser = argparse.ArgumentParser(
        prog="dogpile-warm",
        description="Cache warming for dogpile.cache.",
        epilog="Exit status: 0 success, 1 some key failed to warm, 2 usage or import error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="warm, preload, read and invalidate an in-memory cache, and print what happened",
        description=(
            "Register a catalog, a navigation menu and two per-user functions on an "
            "in-memory region; warm critical data, preload users on login, read, "
            "invalidate by tag, and print each step as a table. Needs no server."
        ),
    )

    warm = commands.add_parser(
        "warm",
        help="warm an application's caches now (critical tasks by default)",
        description=(
            "Import MODULE (which registers its @warmable functions and configures its "
            "regions) and warm its critical tasks, highest priority first, with a live "
            "progress bar and a summary. Exit status 1 when any key failed (listed)."
        ),
    )
    warm.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    warm.set_defaults(subparser=warm)  # its usage line for the checks argparse cannot do
    which = warm.add_mutually_exclusive_group()
    which.add_argument(
        "--tags", type=_tag_list, metavar="A,B", help="warm the tasks with any of these tags"
    )
    which.add_argument(
        "--all", action="store_true", help="warm every task (per-user ones excepted)"
    )
    which.add_argument(
        "--user",
        dest="users",
        nargs="+",
        metavar="ID",
        help="warm_user_data(ID, force=True) for each user id (strings; see --id-type)",
    )
    which.add_argument(
        "--from-snapshot",
        action="store_true",
        help=f"warm the hot set saved by `dogpile-warm snapshot` (key {SNAPSHOT_KEY!r}), hottest first",
    )
    warm.add_argument(
        "--id-type",
        choices=("str", "int"),
        default="str",
        help="how to pass the --user ids: a user id 7 and '7' are different keys (default: str)",
    )
    warm.add_argument(
        "--rate",
        type=_positive_float,
        metavar="N",
        help="with --from-snapshot: at most N keys per second",
    )
    warm.add_argument(
        "--top",
        type=_positive_int,
        metavar="N",
        help="with --from-snapshot: only the N hottest keys",
    )
    warm.add_argument(
        "--region",
        metavar="NAME",
        help="with --from-snapshot: the region holding the snapshot (default: the engine's default region)",
    )
    warm.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="list every key warmed, and every task or key skipped with the reason",
    )

    snapshot = commands.add_parser(
        "snapshot",
        help="save the engine's hot set to the backend, for `warm --from-snapshot`",
        description=(
            "Import MODULE and save the hottest keys this process has read (with their "
            "arguments, access counts and priorities) under the snapshot key in the "
            "backend, for `dogpile-warm warm MODULE --from-snapshot` after a restart. "
            "A fresh process has read nothing unless MODULE reads at import: a running "
            "application saves its own hot set with engine.save_hot_set(). "
            "Nothing read: the previous snapshot is kept."
        ),
    )
    snapshot.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    snapshot.add_argument(
        "--top",
        type=_positive_int,
        default=1000,
        metavar="N",
        help=f"save at most N keys (default 1000, at most {MAX_TOP_N}; the snapshot stays under 900 kB for memcached)",
    )
    snapshot.add_argument(
        "--region",
        metavar="NAME",
        help="the region to store it in (default: the engine's default region)",
    )
    snapshot.add_argument("-v", "--verbose", action="store_true", help="list every key skipped")

    stats = commands.add_parser(
        "stats",
        help="print the engine's stats and warming performance",
        description=(
            "Import MODULE and print get_stats() and get_performance() as tables: the "
            "figures of this process (reads and warm-ups done while importing MODULE)."
        ),
    )
    stats.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    stats.add_argument(
        "--json",
        action="store_true",
        help='one JSON object with "stats" and "performance" (needs no rich)',
    )

    hot = commands.add_parser(
        "hot-keys",
        help="list the hottest keys with access counts and predicted next access",
        description=(
            "Import MODULE and list the hottest keys of the engine's usage tracker: "
            "accesses, accesses per minute over the last hour, and the predicted next "
            "access. The tracker sees the reads of this process only."
        ),
    )
    hot.add_argument("target", metavar="MODULE[:ATTR]", help=_TARGET_HELP)
    hot.add_argument(
        "--top", type=_positive_int, default=10, metavar="N", help="how many keys (default 10)"
    )
    hot.add_argument(
        "--json", action="store_true", help='one JSON object with "hot_keys" (needs no rich)'
    )
    return parser
