"""The rows every benchmark returns, the table they print as, and the shared command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Row", "format_table", "make_parser"]

COLUMNS = ("contender", "figure", "ratio", "goal", "met", "detail")


@dataclass(frozen=True)
class Row:
    """One line of the table: ``contender``'s ``ratio`` on ``figure``, against ``goal``.

    Every goal is an upper bound, so ``met`` is ``ratio <= goal``; it is None
    when there is no goal (a peer, or a figure only reported) or no
    measurement (``ratio`` None: the contender could not run, ``detail`` says
    why). ``detail`` carries the absolute numbers behind the ratio, which hold
    for the machine that ran it only.
    """

    contender: str
    figure: str
    ratio: float | None
    goal: float | None = None
    detail: str = ""
    met: bool | None = field(init=False)

    def __post_init__(self) -> None:
        met = None if self.ratio is None or self.goal is None else self.ratio <= self.goal
        object.__setattr__(self, "met", met)

    def cells(self) -> tuple[str, ...]:
        """The row as the table prints it."""
        ratio = "n/a" if self.ratio is None else _number(self.ratio)
        goal = "" if self.goal is None else f"<= {_number(self.goal)}"
        met = "" if self.met is None else ("yes" if self.met else "NO")
        return (self.contender, self.figure, ratio, goal, met, self.detail)


def _number(value: float) -> str:
    """Three significant digits, trailing zeros kept (``1.00``, ``0.0520``, ``12.3``, ``1,234``)."""
    if value == 0:
        return "0"
    return f"{value:#.3g}" if abs(value) < 100 else f"{value:,.0f}"


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows`` (columns contender | figure | ratio | goal | met | detail)."""
    lines = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def render(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--quick``, described by the first line of ``doc``."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that it runs, measures little"
    )
    return parser
