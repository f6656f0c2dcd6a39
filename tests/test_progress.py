"""Progress of several fits: the board a terminal shows, and the events workers send."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

import opinionmap as om
from helpers import run_bundled
from opinionmap.progress import Board, FitProgress
from opinionmap.spec import Sampling


def _render(board: Board) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(board.table())
    return out.getvalue()


def test_the_board_shows_phase_draws_divergences_and_the_verdict() -> None:
    board = Board(["presence_russia", "main_enemy"])
    board.update("presence_russia", FitProgress("warming up", 400, 8000, 0))
    board.update("presence_russia", FitProgress("sampling", 6000, 8000, 2))
    text = _render(board)
    assert "presence_russia" in text and "main_enemy" in text
    assert "sampling" in text and "6,000 / 8,000 draws (75%)" in text
    assert "2 divergences" in text
    assert "waiting" in text  # main_enemy has not started
    board.finish("presence_russia", "converged: max R-hat 1.004, ...", True)
    # a late event from the worker does not undo "done"
    board.update("presence_russia", FitProgress("reporting"))
    row = board.row_text("presence_russia")
    assert row.startswith("presence_russia  done  converged: max R-hat 1.004")
    assert row.endswith(" s")


def test_the_board_takes_updates_from_several_threads() -> None:
    questions = [f"q{i}" for i in range(8)]
    board = Board([])

    def work(q: str) -> None:
        for done in range(0, 4001, 100):
            board.update(q, FitProgress("sampling", done, 4000, 0))
        board.finish(q, "converged", True)

    threads = [threading.Thread(target=work, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(board.row_text(q).startswith(f"{q}  done  converged") for q in questions)


def test_the_live_board_prints_lines_above_the_table() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True, color_system=None)
    board = Board(["presence_china"])
    with board.live(console) as live:
        board.update("presence_china", FitProgress("compiling"))
        live.print("[1/1] fitting presence_china")
        board.finish("presence_china", "converged: max R-hat 1.003", True)
    text = out.getvalue()
    assert text.index("[1/1] fitting presence_china") < text.rindex("converged: max R-hat 1.003")


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_workers_report_every_phase_to_the_parent(tmp_path: Path, jobs: int) -> None:
    questions = ["presence_usa", "presence_eu"]
    events: dict[str, list[FitProgress]] = {q: [] for q in questions}
    caller = threading.get_ident()
    threads = set()

    def on_progress(question: str, progress: FitProgress) -> None:
        if progress.phase != "waiting":  # said by run_specs itself, before the fits start
            threads.add(threading.get_ident())
        events[question].append(progress)

    sampling = Sampling(draws=100, tune=100, chains=2, seed=1)
    run_bundled(questions, tmp_path, sampling, jobs=jobs, on_progress=on_progress)
    for q in questions:
        phases = [e.phase for e in events[q]]
        assert phases[0] == "waiting"
        for phase in ("compiling", "warming up", "summarising", "reporting"):
            assert phase in phases, (q, phases)
        assert phases.index("compiling") < phases.index("summarising") < phases.index("reporting")
        final = next(e for e in events[q] if e.phase == "summarising")
        assert final.draws_done == final.draws_total == 2 * 200
        saved = om.load(tmp_path / "fits" / f"{q}.nc")
        assert final.divergences == saved.diagnostics.divergences
    if jobs > 1:
        # the workers' events arrive on a thread of the parent, not the caller's
        assert threads and caller not in threads
