"""Many independent fits at once through any ``concurrent.futures.Executor``: :func:`fit_many`.

A job is the keyword arguments of :func:`~bayescale.fit`: its ``"method"`` (see
:data:`~bayescale.methods.front.METHODS`) picks the parametric, IsoFLOP, envelope or L(N, S)
fit, so one call can run a mix of methods; every result saves and loads the same way.

A local process pool by default; a Dask cluster by passing
``distributed.Client(address).get_executor()`` (or :func:`dask_executor`),
so a calibration study of thousands of fits runs on a cluster unchanged.
Results come back in job order; a job that fails is reported in its own
:class:`JobResult` and never loses the others.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from bayescale.errors import BayescaleError
from bayescale.methods.front import METHODS, fit

#: fit() keywords a job may not set (results travel back to the caller, not to a screen).
_FORCED = {"progressbar": False}


@dataclass
class JobResult:
    """The outcome of one job of :func:`fit_many`.

    Attributes
    ----------
    index
        Position of the job in the input.
    fit
        The result (a :class:`~bayescale.Fit`, or the IsoFLOP, envelope or L(N, S) fit the
        job's ``method`` names), or ``None`` when the job failed.
    error
        ``"ExceptionType: message"`` when the job failed, else ``None``.
    traceback
        The formatted traceback of the failure (from the worker), else ``None``.
    """

    index: int
    fit: Any = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        """True when the job produced a fit."""
        return self.error is None


def run_job(job: Mapping[str, Any]) -> Any:
    """Run one job in a worker: ``bayescale.fit(**job)`` (its ``method`` picks the fit)."""
    settings = {**job, **_FORCED}
    return fit(settings.pop("runs"), **settings)


def _failure(index: int, exc: BaseException) -> JobResult:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return JobResult(index=index, error=f"{type(exc).__name__}: {exc}", traceback=text)


def fit_many(
    jobs: Iterable[Mapping[str, Any]],
    executor: Executor | None = None,
    max_workers: int | None = None,
) -> list[JobResult]:
    """Run many independent fits concurrently; results in job order.

    Parameters
    ----------
    jobs
        Keyword arguments of :func:`bayescale.fit` for each job, e.g.
        ``{"runs": frame, "law": "chinchilla", "random_seed": 1}`` or
        ``{"runs": "chinchilla", "method": "isoflop"}``. They travel to the workers, so they
        must pickle (data frames, paths and bundled data set names do).
    executor
        Any ``concurrent.futures.Executor``: for a Dask cluster,
        ``distributed.Client(address).get_executor()``. By default a local
        process pool (spawned processes, ``max_workers`` of them, default
        the number of CPUs), shut down on return.
    max_workers
        Workers of the default pool; ignored when ``executor`` is given.

    Returns
    -------
    list of JobResult
        One per job, in order. A failed job has ``fit=None`` and the error
        (with the worker's traceback); the other jobs' fits are kept.
    """
    jobs = [dict(job) for job in jobs]
    for i, job in enumerate(jobs):
        if "runs" not in job:
            raise BayescaleError(f"job {i} has no 'runs'; each job holds the keyword arguments of fit()")
        if job.get("method", "parametric") not in METHODS:
            raise BayescaleError(f"job {i} has method {job['method']!r}; methods are {list(METHODS)}")
    if not jobs:
        return []
    own = executor is None
    if executor is None:
        workers = max_workers or min(len(jobs), os.cpu_count() or 1)
        # Spawned, not forked: a fork of a process running JAX or PyMC threads can deadlock.
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures: list[Future[Any] | JobResult] = []
        for i, job in enumerate(jobs):
            try:
                futures.append(executor.submit(run_job, job))
            except Exception as exc:  # e.g. a job that does not pickle, or a broken pool
                futures.append(_failure(i, exc))
        results = []
        for i, future in enumerate(futures):
            if isinstance(future, JobResult):
                results.append(future)
                continue
            try:
                results.append(JobResult(index=i, fit=future.result()))
            except Exception as exc:
                results.append(_failure(i, exc))
        return results
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)


def dask_executor(address: str) -> Executor:
    """A ``concurrent.futures.Executor`` on the Dask scheduler at ``address``.

    Needs ``distributed`` (``pip install bayescale[dask]``).
    """
    try:
        from distributed import Client
    except ImportError:
        raise BayescaleError(
            "running on a Dask scheduler needs `distributed`: pip install bayescale[dask]"
        ) from None
    if not _ADDRESS.fullmatch(address.strip()):
        raise BayescaleError(
            f"{address!r} is not a Dask scheduler address; expected HOST:PORT or PROTOCOL://HOST:PORT, "
            "e.g. tcp://10.0.0.5:8786"
        )
    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            # Not the process's default scheduler: a half-made client would stay one after a failure.
            outcome["client"] = Client(address.strip(), timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
        except BaseException as exc:  # a server that is not Dask fails in many ways (even MemoryError)
            outcome["error"] = exc

    # The client's own timeout is not honoured by every server that answers the port: bound it here.
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(CONNECT_TIMEOUT + 10)
    if "client" in outcome:
        return outcome["client"].get_executor()
    reason = outcome.get("error")
    detail = f"{type(reason).__name__}: {reason}" if reason else f"no answer within {CONNECT_TIMEOUT + 10} s"
    raise BayescaleError(f"cannot connect to the Dask scheduler at {address!r}: {' '.join(detail.split())}")


#: Seconds to wait for a Dask scheduler.
CONNECT_TIMEOUT = 20
#: HOST:PORT or PROTOCOL://HOST:PORT (IPv6 hosts in brackets).
_ADDRESS = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}")
