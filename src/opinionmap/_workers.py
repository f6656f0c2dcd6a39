"""The local worker processes of a parallel run, started from processes that have imported once.

Each worker of a parallel run (``opinionmap demo`` and ``opinionmap run`` with more than
one job, :func:`opinionmap.pipeline.fit_many`) needs PyMC, PyTensor, numba, nutpie,
ArviZ and matplotlib: 3-4 s of imports a process. Spawned workers each import them
after the parent has imported its own, so on two cores a run's first fits started some
6 s after the command. On Linux the workers are instead forked from multiprocessing's
fork server, which imports them once (:data:`PRELOAD`); the command line starts that
server before its own imports (:func:`prestart`), so the two overlap: the workers were
ready 3.1 s after the command started against 5-6 s spawned (``benchmarks/README.md``).

The fork server keeps the environment it started with, and PyTensor and numba read
theirs at import: a run whose environment differs from the server's (a variable set
since, such as ``PYTENSOR_FLAGS``) spawns its workers instead, so that they see it.
Elsewhere than Linux the workers are spawned (macOS: forking after system frameworks
have loaded is unsafe; Windows has no fork); ``OPINIONMAP_WORKERS=spawn`` spawns them
everywhere.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from multiprocessing.context import BaseContext

__all__ = ["PRELOAD", "SWITCH", "context", "default_jobs", "prestart"]

# what every worker imports, loaded once by the fork server
PRELOAD = (
    "opinionmap.pipeline",
    "opinionmap.fitting",
    "opinionmap.report",
    "opinionmap.frame",
    "opinionmap.survey",
    "nutpie",
)
# the environment variable that makes every run spawn its workers ("spawn")
SWITCH = "OPINIONMAP_WORKERS"

_lock = threading.Lock()
# the environment the fork server was started with; None until it is started
_server_environment: dict[str, str] | None = None


def default_jobs() -> int:
    """Fits at once in local processes by default: the CPU cores, at most 4."""
    return min(os.cpu_count() or 1, 4)


def prestart() -> None:
    """Start the fork server now, so that its imports run alongside the caller's.

    Does nothing where workers are spawned. Call it before the heavy imports of a
    run that will fit in parallel; :func:`context` starts the server if it has not.
    """
    _fork_server()


def context() -> BaseContext:
    """The multiprocessing context of a parallel run's workers: fork server, else spawn.

    Never ``fork``: the calling process may hold threads (numba's, nutpie's).
    """
    return _fork_server() or multiprocessing.get_context("spawn")


def _fork_server() -> BaseContext | None:
    """The fork server's context, started on first use; ``None`` where workers are spawned."""
    global _server_environment
    if sys.platform != "linux" or os.environ.get(SWITCH, "").strip().lower() == "spawn":
        return None
    environment = dict(os.environ)
    with _lock:
        if _server_environment is None:
            from multiprocessing import forkserver

            server = multiprocessing.get_context("forkserver")
            server.set_forkserver_preload(list(PRELOAD))
            forkserver.ensure_running()
            _server_environment = environment
        elif environment != _server_environment:
            return None
    return multiprocessing.get_context("forkserver")
