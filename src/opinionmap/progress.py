"""Progress of fits: what a fit reports while it runs, and one live board for several.

:func:`opinionmap.fit` calls ``on_progress`` with a :class:`FitProgress` as it
compiles, warms up and samples (draws done over all chains, divergent transitions
after warm-up so far) and when it summarises. :class:`Board` gathers the progress
of several fits (the demo's questions, fitted in parallel worker processes) into one
table, with each question's verdict once it is done; on a terminal the command line
redraws that table in place (:meth:`Board.live`), elsewhere it prints nothing but
the usual one line per question.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["Board", "FitProgress", "Phase"]

Phase = Literal[
    "waiting", "compiling", "warming up", "sampling", "summarising", "reporting", "done"
]


@dataclass(frozen=True)
class FitProgress:
    """Where a fit is: its phase and, while sampling, its draws and divergences.

    ``draws_done`` and ``draws_total`` count iterations over all chains, warm-up
    included; ``divergences`` counts divergent transitions after warm-up.
    """

    phase: Phase
    draws_done: int = 0
    draws_total: int = 0
    divergences: int = 0


@dataclass
class _Row:
    progress: FitProgress = field(default_factory=lambda: FitProgress("waiting"))
    started: float | None = None
    ended: float | None = None
    verdict: str = ""
    converged: bool | None = None


class Board:
    """The progress of several fits, one row per question, safe to update from threads.

    Examples
    --------
    >>> board = Board(["presence_russia", "presence_usa"])
    >>> board.update("presence_russia", FitProgress("sampling", 1200, 8000, 0))
    >>> board.row_text("presence_russia").split("  ")[:4]
    ['presence_russia', 'sampling', '1,200 / 8,000 draws (15%)', '0 divergences']
    >>> board.finish("presence_russia", "converged: max R-hat 1.004", True)
    >>> board.row_text("presence_russia").split("  ")[:2]
    ['presence_russia', 'done']
    """

    def __init__(self, questions: Sequence[str]) -> None:
        self._rows = {q: _Row() for q in questions}
        self._lock = threading.Lock()

    def update(self, question: str, progress: FitProgress) -> None:
        """Record a question's progress (from any thread); a finished question stays done."""
        with self._lock:
            row = self._rows.setdefault(question, _Row())
            if row.converged is not None:
                return
            if row.started is None and progress.phase != "waiting":
                row.started = time.monotonic()
            row.progress = progress

    def finish(self, question: str, verdict: str, converged: bool) -> None:
        """Record that a question is done, with its convergence verdict."""
        with self._lock:
            row = self._rows.setdefault(question, _Row())
            row.progress = FitProgress(
                "done", row.progress.draws_total, row.progress.draws_total,
                row.progress.divergences,
            )  # fmt: skip
            row.ended = time.monotonic()
            row.verdict, row.converged = verdict, converged

    def row_text(self, question: str) -> str:
        """One question's row as plain text (the cells joined by two spaces)."""
        with self._lock:
            return "  ".join(c for c in self._cells(question, self._rows[question]) if c)

    def _cells(self, question: str, row: _Row) -> list[str]:
        p = row.progress
        draws = ""
        if p.draws_total:
            draws = (
                f"{p.draws_done:,} / {p.draws_total:,} draws ({p.draws_done / p.draws_total:.0%})"
            )
        divergences = f"{p.divergences} divergences" if p.draws_total else ""
        if row.converged is not None:
            divergences = ""
            draws = row.verdict
        elapsed = ""
        if row.started is not None:
            seconds = (row.ended or time.monotonic()) - row.started
            elapsed = f"{seconds:.0f} s"
        return [question, p.phase, draws, divergences, elapsed]

    def table(self) -> Table:
        """The board as a rich table: question, phase, draws or verdict, divergences, time."""
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for name in ("question", "phase", "draws / verdict", "divergences", "time"):
            # a verdict is printed whole above the board; its row shows one line of it
            wide = name == "draws / verdict"
            table.add_column(
                name, no_wrap=wide, overflow="ellipsis", max_width=72 if wide else None
            )
        with self._lock:
            for question, row in self._rows.items():
                cells = self._cells(question, row)
                style = "" if row.converged is None else ("green" if row.converged else "bold red")
                table.add_row(*(Text(c, style=style) for c in cells))
        return table

    @contextmanager
    def live(self, console: Console | None = None) -> Iterator[Console]:
        """Redraw the board in place on a terminal while the block runs; yield the console.

        Print other lines with the yielded console's ``print``: they appear above
        the board.
        """
        from rich.console import Console
        from rich.live import Live

        console = console or Console()
        with Live(
            console=console, get_renderable=self.table, refresh_per_second=4, transient=False
        ):
            yield console
