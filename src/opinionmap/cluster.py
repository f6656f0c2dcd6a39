"""Fits on a ``dask.distributed`` cluster: one model at a time on each worker.

:func:`opinionmap.fit_many`, given a :class:`distributed.Client` or a scheduler's
address, hands its jobs here through the batch runner of :mod:`opinionmap.pipeline`.
Each job is a task that compiles and samples one model with all the cores it is
given, so a worker must not run two at once, whatever its number of threads: every
task asks for one unit of the worker resource :data:`FIT_RESOURCE`, and a worker
plugin gives each worker one unit (workers that join later too; a worker started
with ``--resources opinionmap_fit=N`` keeps its own ``N``). The tasks read the specs'
files and write their outputs themselves, so the workers need the same file system
at the same paths as the client (the shared home or scratch folder of a Slurm or PBS
cluster, a shared volume on Kubernetes). A fit's draws depend on its seed alone, so
the cluster gives the draws local processes give.

Progress (:class:`~opinionmap.progress.FitProgress`) travels from the workers as
events of a topic of this run, which the client passes on as it receives them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, cast

from distributed import WorkerPlugin

from opinionmap.errors import OpinionmapError
from opinionmap.progress import FitProgress, Phase

if TYPE_CHECKING:
    from distributed import Client, Worker

__all__ = ["CONNECT_TIMEOUT", "FIT_RESOURCE", "connect", "run_on_cluster"]

# the worker resource each fit takes one unit of; each worker has one
FIT_RESOURCE = "opinionmap_fit"
# seconds to reach a scheduler before giving up
CONNECT_TIMEOUT = 5.0


class _Job(Protocol):
    """What :func:`run_on_cluster` needs of a job: a name for its task, where events go."""

    @property
    def name(self) -> str: ...

    @property
    def events(self) -> Any: ...


def connect(address: str, *, timeout: float = CONNECT_TIMEOUT) -> Client:
    """A client of the scheduler at ``address``, or a one-line error within ``timeout`` s.

    The client is not made dask's default scheduler; close it when done (it is a
    context manager).

    Raises
    ------
    OpinionmapError
        The address is malformed or no scheduler answered there in time; the message
        names it and says how to start one.
    """
    from distributed import Client

    try:
        # not the default scheduler: dask code elsewhere in this process keeps its own
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TimeoutError) as exc:
        raise OpinionmapError(
            f"cannot reach a dask scheduler at {address!r} ({exc}); start one "
            "(`dask scheduler`, or a dask-jobqueue or dask-kubernetes cluster) and give its "
            "address, e.g. tcp://10.0.0.5:8786, or leave --scheduler out to fit in local "
            "processes."
        ) from None


class OneFitPerWorker(WorkerPlugin):
    """Give each worker one unit of :data:`FIT_RESOURCE` unless it declares its own."""

    name = "opinionmap-one-fit-per-worker"

    async def setup(self, worker: Worker) -> None:
        """Declare the resource on ``worker`` (and tell the scheduler)."""
        if FIT_RESOURCE not in worker.state.total_resources:
            await worker.set_resources(**{FIT_RESOURCE: 1})


def run_on_cluster[J: _Job, R](
    task: Callable[[J], R],
    work: Sequence[J],
    client: Client,
    on_progress: Callable[[str, FitProgress], None] | None = None,
) -> Iterator[R]:
    """Run ``task`` on each job as a task of the cluster; yield each result as it is done.

    Parameters
    ----------
    task
        A module-level function of one job (the workers import it).
    work
        The jobs: dataclasses with a ``name`` (shown on the cluster's dashboard) and an
        ``events`` field, replaced here by where the task puts its ``(question,
        FitProgress)`` pairs.
    client
        The cluster's client.
    on_progress
        Called, from the client's event loop, with each question's progress.

    Notes
    -----
    Jobs not yet done when the caller stops iterating (an error, Ctrl-C) are
    cancelled.
    """
    from distributed import as_completed

    client.register_plugin(OneFitPerWorker(), name=OneFitPerWorker.name)
    run = uuid.uuid4().hex[:8]
    topic = f"opinionmap-progress-{run}"
    ended = threading.Event()  # events still on their way once the run is over are dropped
    if on_progress is not None:

        def forward(event: tuple[float, Any]) -> None:
            question, phase, done, total, divergences = event[1]
            if not ended.is_set():
                on_progress(question, FitProgress(cast(Phase, phase), done, total, divergences))

        client.subscribe_topic(topic, forward)
        work = [replace(job, events=Topic(topic)) for job in work]  # type: ignore[type-var]
    futures = [
        client.submit(
            task,
            job,
            key=f"opinionmap-{job.name}-{run}-{i}",
            resources={FIT_RESOURCE: 1},
            pure=False,
        )
        for i, job in enumerate(work)
    ]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        ended.set()
        client.cancel([f for f in futures if not f.done()])
        if on_progress is not None:
            client.unsubscribe_topic(topic)


@dataclass(frozen=True)
class Topic:
    """Where a task's progress goes on a cluster: the run's event topic (picklable)."""

    name: str

    def bound(self) -> _WorkerTopic:
        """The topic, bound to the worker running the calling task (call it in its thread)."""
        from distributed import get_worker

        return _WorkerTopic(self.name, get_worker())


@dataclass(frozen=True)
class _WorkerTopic:
    """A topic and a worker: ``put`` logs an event there, from any thread."""

    name: str
    worker: Worker

    def put(self, item: tuple[str, FitProgress]) -> None:
        question, p = item
        self.worker.log_event(
            self.name, [question, p.phase, p.draws_done, p.draws_total, p.divergences]
        )
