"""Running a grid's runs: what each needs, and the executors that run them.

Before anything trains, every run directory is inspected (:func:`plan`): a finished run is
kept, an interrupted one is resumed, a missing one is started, one whose training diverged
(its loss turned non-finite; ``diverged.json``) is kept as it is, an outcome the report
lists (delete its folder to train it again), and a run whose saved
configuration differs from the grid's in an option that cannot change on resume is an
error naming the run and the option (nothing is started then). Each run is inspected
again when it starts (:func:`run_task`): another ``ablate`` on the same folder may have
finished or started it in the meantime. A run the other is training (it holds the run's
lock) is waited for and then kept or resumed, never reported as failed and never written
into while the other trains it; past the time limit it is left to the other.

Executors, all calling :func:`run_task` in a separate process per job:

* ``local``: ``--jobs N`` processes on this machine, each with ``cores // N`` torch
  threads (:class:`concurrent.futures.ProcessPoolExecutor`, spawned processes); each
  worker ends itself when the ablate process dies (even by SIGKILL), so no run goes on
  training, or holds its run's lock, without it; the next ``ablate`` resumes those runs;
* ``slurm``: a Slurm job array through ``submitit`` (optional extra ``slurm``); ``--jobs``
  caps how many array tasks run at once;
* ``submitit-local``: the same submitit path on this machine (``N`` jobs at a time).

A run's output goes to ``train.log`` in its run directory.

GPUs: on this machine the runs whose device is ``auto`` or ``cuda`` go to the visible GPUs
in turn: with ``local``, worker process ``i`` trains all its runs on ``cuda:i mod count``
(so the GPUs stay evenly loaded whatever order the runs finish in); with
``submitit-local``, run ``i`` of each batch of ``--jobs`` on ``cuda:i mod count``.
``--jobs`` larger than the number of GPUs puts several runs on each. Slurm tasks get their
own GPUs.

``time_limit``: after that many seconds no run starts, and a running one stops after the
epoch it is in (committed: the next ``ablate`` resumes it); the report covers the runs that
finished.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._console import console_lines
from ..train.config import ConfigError, TrainConfig
from ..train.epoch_record import EpochRecord
from ..train.loop import TrainingDiverged, train
from ..train.rundir import RunBusy, RunDir, fixed_changes
from .grid import Grid, GridRun

__all__ = [
    "EXECUTORS",
    "PlannedRun",
    "SlurmOptions",
    "check_executor",
    "check_time_limit",
    "die_with_parent",
    "execute",
    "plan",
    "run_task",
    "start_worker",
    "visible_gpus",
]

_logger = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "submitit-local")
LOG_FILE = "train.log"
# seconds between two looks at a run another ablate is training
WAIT_POLL = 2.0


@dataclass(frozen=True)
class PlannedRun:
    """A run and what it needs: ``"done"``, ``"diverged"`` (kept, like done), ``"resume"``
    (after ``epochs_done``) or ``"new"``."""

    run: GridRun
    action: str
    epochs_done: int = 0


@dataclass(frozen=True)
class SlurmOptions:
    """What a Slurm job array asks for (``--executor slurm``)."""

    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    time_min: int = 120


def _check_same_configuration(run_dir: RunDir, config: TrainConfig, saved: TrainConfig) -> None:
    """Raise ``ConfigError`` naming the run and each option whose saved value differs from
    the grid's in a way a resume cannot change."""
    differ = fixed_changes(config, saved)
    if differ:
        listing = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in differ.items())
        raise ConfigError(
            f"{run_dir.path} was trained with another configuration than the grid's "
            f"({listing}); restore the grid, or use another --out (or a new variant "
            "name) for the changed configuration"
        )


def plan(grid: Grid, root: str | Path) -> list[PlannedRun]:
    """What each run of ``grid`` under ``root`` needs; raises ``ConfigError`` for a run that
    exists with a different configuration (naming the run and the options)."""
    planned = []
    for run in grid.runs(root):
        run_dir = RunDir(run.config.out)  # type: ignore[arg-type]
        if not run_dir.holds_run():
            planned.append(PlannedRun(run, "new"))
            continue
        saved, _ = run_dir.read_config()
        _check_same_configuration(run_dir, run.config, saved)
        done = run_dir.committed_epoch()
        if done > run.config.epochs:
            raise ConfigError(
                f"{run_dir.path} has {done} epochs, more than the grid's epochs="
                f"{run.config.epochs}; restore the grid or use another --out"
            )
        if done == run.config.epochs:
            action = "done"  # the grid's epochs, whatever a longer training did after them
        else:
            action = "resume" if run_dir.divergence() is None else "diverged"
        planned.append(PlannedRun(run, action, done))
    return planned


class _TimeUp(Exception):
    """The grid's time limit passed; the run stops after its committed epoch."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Train one run (in a worker process): ``task`` holds the flat ``config``, ``resume``,
    ``threads`` (torch threads, or None) and ``deadline`` (``time.time()`` after which the
    run stops after its current epoch, or None). Output goes to the run's ``train.log``.
    Returns ``{"test_acc", "seconds"}``, ``{"stopped_after", "seconds"}`` (the last
    committed epoch) when the deadline stopped it, or ``{"diverged", "seconds"}`` (the
    message) when its loss turned non-finite, now or in an earlier call.

    What the run needs is decided again when it starts, not only when the grid was planned:
    another ``ablate`` sharing the folder may have trained it since. A run that has all its
    epochs by then is kept (its ``test_acc``, 0 seconds; its log untouched), one with some
    is resumed. A run another process is training (it holds the run's lock) is waited for,
    polling every :data:`WAIT_POLL` seconds, and then decided again: finished by the other
    (``"by_other": True`` in the result), or resumed here when the other stopped early. Past
    the deadline it is left to the other (``{"busy": True}``). Nothing is written into the
    run while the other trains it."""
    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    config = TrainConfig.from_dict(_on_worker_gpu(task["config"]))
    deadline = task.get("deadline")
    started = time.perf_counter()
    run_dir = RunDir(config.out)  # type: ignore[arg-type]
    waited = False
    while True:
        while run_dir.busy():
            if deadline is not None and time.time() >= deadline:
                return {"busy": True, "seconds": time.perf_counter() - started}
            waited = True
            time.sleep(WAIT_POLL)
        if deadline is not None and time.time() >= deadline:
            return {"stopped_after": None, "seconds": 0.0}
        resume = bool(task["resume"]) or run_dir.holds_run()
        if resume and run_dir.committed_epoch() == config.epochs:
            _check_same_configuration(run_dir, config, run_dir.read_config()[0])
            acc = run_dir.read_metrics()[-1]["test_acc"]
            return {"test_acc": acc, "seconds": 0.0, **({"by_other": True} if waited else {})}
        diverged = run_dir.divergence() if resume else None
        if diverged is not None:
            return {"diverged": diverged["message"], "seconds": 0.0}
        try:
            return _train_logged(config, resume, deadline, started)
        except RunBusy:  # another ablate took the run since the check: wait for it
            waited = True


def _train_logged(
    config: TrainConfig, resume: bool, deadline: float | None, started: float
) -> dict[str, Any]:
    """:func:`run_task`'s training, its output appended to the run's ``train.log``."""
    out = Path(config.out)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)

    def stop_at_deadline(record: EpochRecord) -> None:
        if deadline is not None and time.time() >= deadline and record.epoch < config.epochs:
            raise _TimeUp(record.epoch)

    with (
        open(out / LOG_FILE, "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
        console_lines(),  # the run's lines into its log, from Python callers' runs too
    ):
        try:
            record = train(config, resume=resume, callbacks=[stop_at_deadline])
        except _TimeUp as stop:
            _logger.info(f"stopped by the grid's time limit after epoch {stop.epoch}")
            return {"stopped_after": stop.epoch, "seconds": time.perf_counter() - started}
        except TrainingDiverged as exc:  # an outcome of the run, recorded in its folder
            _logger.info(f"diverged: {exc}")
            return {"diverged": str(exc), "seconds": time.perf_counter() - started}
        except RunBusy:
            raise  # the run is another process's: nothing of this one goes into its log
        except Exception:
            traceback.print_exc()  # into the log; the executor reports the error itself
            raise
    return {"test_acc": record.test_acc, "seconds": time.perf_counter() - started}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def visible_gpus() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _tasks(
    pending: Sequence[PlannedRun],
    threads: int | None,
    deadline: float | None,
    gpus: int = 0,
) -> list[dict[str, Any]]:
    """The workers' tasks; with ``gpus``, runs on ``auto``/``cuda`` spread over them."""
    tasks = []
    for index, p in enumerate(pending):
        config = p.run.config.to_dict()
        if gpus and config["device"] in ("auto", "cuda"):
            config["device"] = f"cuda:{index % gpus}"
        tasks.append(
            {
                "config": config,
                "resume": p.action == "resume",
                "threads": threads,
                "deadline": deadline,
            }
        )
    return tasks


Outcome = tuple[PlannedRun, dict[str, Any] | None, str | None]


def _watch_parent(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)  # the ablate process is gone: stop training (the run resumes next time)


def die_with_parent(parent: int, interval: float = 0.5) -> None:
    """Worker initializer: end this process within ``interval`` seconds of the death of
    process ``parent`` (the ablate process that started it), however that died."""
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, interval), daemon=True).start()


# the GPU this worker process trains on (local executor, machine with GPUs)
_WORKER_GPU: int | None = None


def start_worker(parent: int, gpus: Any = None) -> None:
    """Worker initializer: end with the ablate process (:func:`die_with_parent`), and take
    this worker's GPU from ``gpus`` (a queue of GPU indices, one per worker), if given."""
    global _WORKER_GPU
    die_with_parent(parent)
    if gpus is not None:
        _WORKER_GPU = int(gpus.get())


def _on_worker_gpu(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` on this worker's GPU when it asks for ``auto`` or ``cuda``."""
    if _WORKER_GPU is not None and config["device"] in ("auto", "cuda"):
        return {**config, "device": f"cuda:{_WORKER_GPU}"}
    return config


def run_threads(executor: str, jobs: int, slurm: SlurmOptions | None = None) -> int | None:
    """Torch threads of each run: the cores shared among ``jobs`` runs on this machine
    (``--cpus-per-task`` when given); None on Slurm, whose tasks keep their own setting."""
    if slurm is not None and slurm.cpus_per_task:
        return slurm.cpus_per_task
    if executor == "slurm":
        return None
    return max(1, available_cores() // jobs)


def _local(pending: Sequence[PlannedRun], jobs: int, deadline: float | None) -> Iterator[Outcome]:
    threads = run_threads("local", jobs)
    tasks = _tasks(pending, threads, deadline)
    context = multiprocessing.get_context("spawn")
    gpus, queue = visible_gpus(), None
    if gpus:
        queue = context.Queue()
        for worker in range(jobs):
            queue.put(worker % gpus)
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=start_worker, initargs=(os.getpid(), queue)
    ) as pool:
        futures = {pool.submit(run_task, task): p for task, p in zip(tasks, pending, strict=True)}
        for future in concurrent.futures.as_completed(futures):
            try:
                yield futures[future], future.result(), None
            except Exception as exc:  # a failed run is reported, the others go on
                yield futures[future], None, f"{type(exc).__name__}: {exc}"


def _submitit(
    pending: Sequence[PlannedRun],
    jobs: int,
    root: Path,
    cluster: str,
    slurm: SlurmOptions,
    deadline: float | None,
) -> Iterator[Outcome]:
    try:
        import submitit
    except ImportError:
        raise ImportError(
            "--executor slurm/submitit-local needs submitit: pip install 'preattn[slurm]'"
        ) from None
    executor = submitit.AutoExecutor(folder=str(root / ".submitit" / "%j"), cluster=cluster)
    threads = run_threads("slurm" if cluster == "slurm" else "local", jobs, slurm)
    parameters: dict[str, Any] = {"timeout_min": slurm.time_min, "name": "preattn-ablate"}
    if cluster == "slurm":
        parameters.update(slurm_array_parallelism=jobs, gpus_per_node=slurm.gpus_per_task)
        if slurm.cpus_per_task:
            parameters["cpus_per_task"] = slurm.cpus_per_task
        if slurm.partition:
            parameters["slurm_partition"] = slurm.partition
    executor.update_parameters(**parameters)
    # the local executor starts every job of an array at once: submit `jobs` at a time
    batch = len(pending) if cluster == "slurm" else jobs
    for start in range(0, len(pending), batch):
        chunk = list(pending[start : start + batch])
        gpus = visible_gpus() if cluster == "local" else 0  # Slurm assigns each task its own
        submitted = executor.map_array(run_task, _tasks(chunk, threads, deadline, gpus))
        by_job = dict(zip((j.job_id for j in submitted), chunk, strict=True))
        for job in submitit.helpers.as_completed(submitted, poll_frequency=1):
            try:
                yield by_job[job.job_id], job.result(), None
            except Exception as exc:
                reason = str(exc).strip().splitlines()
                yield by_job[job.job_id], None, reason[-1] if reason else type(exc).__name__


def check_time_limit(time_limit: Any) -> None:
    """Raise ``ValueError`` unless ``time_limit`` is None or a finite number of seconds > 0."""
    if time_limit is None:
        return
    number = isinstance(time_limit, int | float) and not isinstance(time_limit, bool)
    if not (number and math.isfinite(time_limit) and time_limit > 0):
        infinite = " (not finite)" if number and math.isinf(time_limit) else ""
        raise ValueError(
            f"time_limit must be a number of seconds > 0, got {time_limit!r}{infinite}"
        )


def check_executor(executor: str, jobs: int) -> None:
    """Raise ``ValueError`` for an unknown executor or a ``jobs`` that is not an int >= 1."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")


def execute(
    pending: Sequence[PlannedRun],
    *,
    root: str | Path,
    jobs: int = 1,
    executor: str = "local",
    slurm: SlurmOptions | None = None,
    time_limit: float | None = None,
    progress: Callable[[str], None] = _logger.info,
) -> list[Outcome]:
    """Run ``pending`` (the runs :func:`plan` found not done); report each finished run
    through ``progress``. Returns ``(planned, result or None, error or None)`` per run.
    ``time_limit``: seconds after which runs stop (module docstring)."""
    check_executor(executor, jobs)
    check_time_limit(time_limit)
    if not pending:
        return []
    deadline = None if time_limit is None else time.time() + time_limit
    if executor == "local":
        outcomes = _local(pending, jobs, deadline)
    else:
        cluster = "slurm" if executor == "slurm" else "local"
        outcomes = _submitit(pending, jobs, Path(root), cluster, slurm or SlurmOptions(), deadline)
    results = []
    for count, (planned, result, error) in enumerate(outcomes, 1):
        log = Path(planned.run.config.out) / LOG_FILE  # type: ignore[arg-type]
        if error is None and result is not None and "stopped_after" in result:
            after = result["stopped_after"]
            status = (
                "not started: time limit reached"
                if after is None
                else f"stopped by the time limit after epoch {after} of "
                f"{planned.run.config.epochs}, {result['seconds']:.0f} s"
            ) + " (the same command resumes it)"
        elif error is None and result is not None and result.get("busy"):
            status = (
                "left to the process training it (another ablate on this folder; the same "
                "command reports it once it is finished)"
            )
        elif error is None and result is not None and "diverged" in result:
            status = (
                f"DIVERGED ({result['diverged']}), {result['seconds']:.0f} s; kept as the "
                "run's outcome, which the report lists (delete the run's folder to train it "
                f"again); see {log}"
            )
        elif error is None and result is not None:
            status = f"test acc {result['test_acc']:.4f}, {result['seconds']:.0f} s"
            if result.get("by_other"):
                status += " (trained by another ablate on this folder, waited for)"
        else:
            status = f"FAILED ({error}); see {log}"
        progress(f"[{count}/{len(pending)}] {planned.run.label}: {status}")
        results.append((planned, result, error))
    return results
