"""A run directory: its files, its lock, and checkpoints committed one epoch at a time.

Layout of ``RUN/``::

    config.yaml                 the TrainConfig (flat keys) and a ``history`` of resumes
    metrics.jsonl               one JSON record per completed epoch
    steps.jsonl                 one record per optimiser step (loss, LR) of those epochs
    checkpoint                  pointer: the name of the last committed epoch directory
    checkpoints/epoch-NNNN/     model.safetensors + state.pt of that epoch
    model.safetensors           the last committed weights (a hard link, or a copy)
    diverged.json               present when training stopped on a non-finite loss: the
                                message and the last good epoch (removed when it trains again)
    curves.png, lambda.png      plots of the metrics
    .run-files                  every path the run (and its readers) wrote in RUN
    .lock                       held (``flock``) by the process that trains in RUN

``config.yaml`` also holds the run's ``data`` description
(:class:`~preattn.data.registry.DatasetInfo`: channels, image size, classes,
normalisation), so a run's network can be rebuilt without its data set.

Commit of epoch N (:meth:`RunDir.commit`): both files are written into
``checkpoints/.tmp-epoch-NNNN-*``, the directory is renamed to ``epoch-NNNN``, then the
``checkpoint`` pointer is replaced atomically. The pointer is the commit: a kill or a full
disk at any instant leaves it naming a complete epoch (N − 1 or N). Temporaries and
uncommitted epoch directories are removed at the next start (:meth:`RunDir.clean_stale`),
and only after :meth:`RunDir.check_checkpoints` found the pointer naming a complete epoch:
a pointer that names a missing or incomplete epoch (a hand edit, a run copied while it
committed) is refused with nothing deleted, so clean-up never removes the last complete
epoch.

What is deleted: only what the run wrote. Paths written into RUN are recorded in
``.run-files``; ``--overwrite`` (:meth:`RunDir.clear`) removes exactly those, and nothing is
deleted before the decision to write in RUN is final. Symbolic links are never followed
out of RUN: a link in place of a run file or of ``checkpoints/`` is refused.

``state.pt`` holds tensors and plain values only and is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .._failures import is_disk_full, low_on_space, writer_failed
from .._files import irregular_kind, require_regular_file
from .._io import atomic_write, atomic_write_text, set_file_mode
from ..data.registry import DatasetInfo
from .config import ConfigError, TrainConfig
from .data_record import read_data_record

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "RESUMABLE_OPTIONS",
    "WEIGHTS_FILE",
    "RunBusy",
    "RunDir",
    "RunError",
    "fixed_changes",
    "guard_output",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
STEPS_FILE = "steps.jsonl"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
POINTER_FILE = "checkpoint"
DIVERGED_FILE = "diverged.json"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"
MANIFEST_FILE = ".run-files"
PLOTS = ("curves.png", "lambda.png", "confusion.png", "eval.json")
# the files training writes; with the plots, the files of a run
_TRAINED_FILES = (
    CONFIG_FILE,
    METRICS_FILE,
    STEPS_FILE,
    POINTER_FILE,
    WEIGHTS_FILE,
    STATE_FILE,
    DIVERGED_FILE,
)
RUN_FILES = (*_TRAINED_FILES, *PLOTS)
# what no command but training may write in a run directory
_CORE_FILES = (*_TRAINED_FILES, CHECKPOINTS_DIR, MANIFEST_FILE, LOCK_FILE)
# names in checkpoints/ that a run writes: committed epochs and commit temporaries
_CHECKPOINT_ENTRY = re.compile(r"epoch-\d{4,}|\.tmp-epoch-\d{4,}-\d+")
_EPOCH_DIR = re.compile(r"epoch-\d{4,}")

# options a resumed run may change (the runtime section, and epochs); every other is fixed
RESUMABLE_OPTIONS = TrainConfig.resumable()

# called after each step of a commit with the step's name; tests inject failures here
_after_commit_step: Callable[[str], None] = lambda step: None  # noqa: E731


class RunError(RuntimeError):
    """A run directory cannot be used as asked; the message says why and what to do."""


class RunBusy(RunError):
    """Another process trains in the run directory (it holds the run's lock)."""


def _epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def fixed_changes(config: TrainConfig, saved: TrainConfig) -> dict[str, list[Any]]:
    """The options outside :data:`RESUMABLE_OPTIONS` in which ``config``
    differs from the ``saved`` run's: ``{name: [saved value, new value]}``. A run can be
    resumed with ``config`` only when this is empty."""
    now, before = config.to_dict(), saved.to_dict()
    return {
        k: [before[k], now[k]] for k in now if k not in RESUMABLE_OPTIONS and now[k] != before[k]
    }


def _no_link(path: Path, root: Path) -> None:
    """Raise if ``path`` or a folder between ``root`` and it is a symbolic link."""
    current = path
    while current != root and root in current.parents:
        if current.is_symlink():
            raise RunError(
                f"{current} is a symbolic link; a run keeps its files inside its own "
                f"directory {root} (remove the link or choose another --out)"
            )
        current = current.parent


class RunDir:
    """The files of one run in ``path`` (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path} is a file, not a run directory; choose another --out")

    # --- what is there -------------------------------------------------------------------

    def holds_run(self) -> bool:
        """Whether any file of a run is present (config, metrics, checkpoints)."""
        names = (*RUN_FILES, CHECKPOINTS_DIR, MANIFEST_FILE)
        return self.path.is_dir() and any(os.path.lexists(self.path / n) for n in names)

    def owns(self, path: str | Path) -> bool:
        """Whether ``path`` is one of this run's files (recorded, or a run file's name)."""
        path = Path(os.path.abspath(path))
        root = Path(os.path.abspath(self.path))
        if path.parent == root and path.name in (*RUN_FILES, CHECKPOINTS_DIR, MANIFEST_FILE):
            return True
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError:
            return False
        return relative in self.recorded() or relative.startswith(CHECKPOINTS_DIR + "/")

    # --- what the run wrote --------------------------------------------------------------

    def recorded(self) -> list[str]:
        """The paths (relative to RUN) recorded as written by this run."""
        path = self.path / MANIFEST_FILE
        if not path.is_file() or path.is_symlink():
            return []
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line for line in lines if line and not line.startswith("/") and ".." not in line]

    def record(self, *paths: str | Path) -> None:
        """Record ``paths`` (inside RUN) as written by this run, for :meth:`clear`."""
        root = Path(os.path.abspath(self.path))
        known, changed = self.recorded(), False
        for p in paths:
            try:
                relative = Path(os.path.abspath(p)).relative_to(root).as_posix()
            except ValueError:
                continue  # written elsewhere: not the run's
            if relative not in known and relative != ".":
                known.append(relative)
                changed = True
        if changed:
            atomic_write_text(self.path / MANIFEST_FILE, "".join(k + "\n" for k in known))

    def committed_epoch(self) -> int:
        """The last committed epoch, 0 when there is none."""
        pointer = self.path / POINTER_FILE
        require_regular_file(pointer, RunError)
        if pointer.is_file():
            name = pointer.read_text().strip()
            try:
                return int(name.removeprefix("epoch-"))
            except ValueError:
                raise RunError(f"{pointer}: expected 'epoch-NNNN', got {name!r}") from None
        legacy = self.path / WEIGHTS_FILE
        if legacy.is_file() and (self.path / STATE_FILE).is_file():
            return _weights_epoch(legacy)  # a run written before checkpoints/ existed
        return 0

    # --- divergence ---------------------------------------------------------------------

    def mark_diverged(self, message: str) -> None:
        """Record that training stopped on a non-finite loss (``message`` says where);
        the last committed epoch is the last good one."""
        record = {"message": message, "last_good_epoch": self.committed_epoch()}
        self._write_text(DIVERGED_FILE, json.dumps(record) + "\n")

    def divergence(self) -> dict[str, Any] | None:
        """``{"message", "last_good_epoch"}`` when the run's training diverged, else None."""
        path = self.path / DIVERGED_FILE
        require_regular_file(path, RunError)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunError(f"{path}: not a divergence record (invalid JSON)") from None
        if not isinstance(record, dict) or not isinstance(record.get("message"), str):
            raise RunError(f"{path}: a divergence record needs a 'message' string")
        return record

    def clear_divergence(self) -> None:
        """Forget a recorded divergence (the run trains again)."""
        path = self.path / DIVERGED_FILE
        _no_link(path, self.path)
        path.unlink(missing_ok=True)

    def _checkpoint_dir(self) -> Path:
        epoch = self.committed_epoch()
        if epoch == 0:
            raise RunError(f"{self.path}: no committed checkpoint (no completed epoch)")
        folder = self.path / CHECKPOINTS_DIR / _epoch_name(epoch)
        if folder.is_dir():
            return folder
        if not (self.path / POINTER_FILE).is_file():
            return self.path  # a run written before checkpoints/ existed
        raise RunError(self._damaged_pointer(epoch, "is missing"))

    def complete_epochs(self) -> list[int]:
        """The epochs in ``checkpoints/`` whose folder holds both files of a commit
        (committed or not), in increasing order."""
        folder = self._checkpoints_folder()
        if not folder.is_dir():
            return []
        epochs = []
        for p in folder.iterdir():
            if _EPOCH_DIR.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
                files = (p / WEIGHTS_FILE, p / STATE_FILE)
                if all(f.is_file() and not f.is_symlink() for f in files):
                    epochs.append(int(p.name.removeprefix("epoch-")))
        return sorted(epochs)

    def _damaged_pointer(self, epoch: int, what: str) -> str:
        complete = [_epoch_name(e) for e in self.complete_epochs()]
        found = f"the complete epochs are {', '.join(complete)}" if complete else "none is complete"
        advice = (
            f"write {complete[-1]!r} into {self.path / POINTER_FILE} to resume from it, or "
            if complete
            else ""
        )
        return (
            f"{self.path / POINTER_FILE} names {_epoch_name(epoch)}, but "
            f"{CHECKPOINTS_DIR}/{_epoch_name(epoch)} {what} ({found}); nothing was deleted: "
            f"{advice}use --overwrite to start the run again"
        )

    def check_checkpoints(self) -> int:
        """The committed epoch, once the checkpoints agree with the pointer; else
        :class:`RunError`, before anything is deleted.

        The pointer must name a complete epoch folder (weights of that epoch and a training
        state), and no complete epoch may lie beyond the one a commit interrupted between
        its rename and its pointer (``committed + 1``): a pointer that lags further, or is
        missing beside such epochs, was damaged or copied apart from its run."""
        epoch = self.committed_epoch()
        complete = self.complete_epochs()
        if epoch:
            folder = self._checkpoint_dir()
            if folder != self.path:
                if epoch not in complete:
                    lacking = [
                        f"{folder / n} is {irregular_kind(folder / n) or 'missing'}"
                        for n in (WEIGHTS_FILE, STATE_FILE)
                        if not (folder / n).is_file() or irregular_kind(folder / n)
                    ]
                    what = f"is incomplete ({'; '.join(lacking) or 'a file is a link'})"
                    raise RunError(self._damaged_pointer(epoch, what))
                if _weights_epoch(folder / WEIGHTS_FILE) != epoch:
                    raise RunError(self._damaged_pointer(epoch, "holds another epoch's weights"))
        beyond = [e for e in complete if e > epoch + 1]
        if beyond:
            pointer = self.path / POINTER_FILE
            named = _epoch_name(epoch) if epoch else "no epoch"
            raise RunError(
                f"{pointer} names {named}, but {CHECKPOINTS_DIR}/{_epoch_name(beyond[-1])} is "
                f"complete; nothing was deleted: write {_epoch_name(beyond[-1])!r} into "
                f"{pointer} to resume from it, or use --overwrite to start the run again"
            )
        return epoch

    # --- lock, cleaning, overwrite -------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive OS lock on ``RUN/.lock`` (released when the process dies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        require_regular_file(self.path / LOCK_FILE, RunError, "lock file")  # a FIFO blocks
        with open(self.path / LOCK_FILE, "a") as handle:
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock
                yield
                return
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(
                    f"{self.path} is in use by another training process (lock {LOCK_FILE}); "
                    "wait for it or choose another --out"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def busy(self) -> bool:
        """Whether another process holds the run's lock (trains in RUN) at this instant."""
        path = self.path / LOCK_FILE
        if not path.is_file() or path.is_symlink():
            return False
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False

    def _checkpoints_folder(self) -> Path:
        """``RUN/checkpoints``; a symbolic link there is refused (never followed)."""
        folder = self.path / CHECKPOINTS_DIR
        _no_link(folder, self.path)
        return folder

    def clean_stale(self) -> list[Path]:
        """Remove commit temporaries and epoch directories the pointer does not name.

        Only entries named as a run names them (``epoch-NNNN``, ``.tmp-epoch-NNNN-PID``)
        are touched; any other file in ``checkpoints/`` is left alone. Call it only once
        the decision to write in RUN is final (resume or overwrite). The checkpoints are
        checked first (:meth:`check_checkpoints`): when the pointer does not name a complete
        epoch, nothing is removed, so the last complete epoch always survives."""
        folder = self._checkpoints_folder()
        if not folder.is_dir():
            return []
        keep = _epoch_name(self.check_checkpoints())
        removed = [
            p
            for p in folder.iterdir()
            if p.name != keep and _CHECKPOINT_ENTRY.fullmatch(p.name) and not p.is_symlink()
        ]
        for p in removed:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return removed

    def clear(self) -> None:
        """Delete what this run wrote (``--overwrite``): the paths recorded in
        ``.run-files`` (a run without that record: the run files by name) and the epochs in
        ``checkpoints/``. Other files in RUN are kept; links are removed, never followed."""
        folder = self._checkpoints_folder()
        recorded = self.recorded() or list(RUN_FILES)
        for relative in recorded:
            path = self.path / relative
            with contextlib.suppress(RunError):
                _no_link(path.parent, self.path)
                if path.is_symlink() or path.is_file():
                    path.unlink()
        if folder.is_dir():
            for p in folder.iterdir():
                if _CHECKPOINT_ENTRY.fullmatch(p.name) and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
        # folders the run's files emptied (viz/, checkpoints/), deepest first
        folders = {(self.path / r).parent for r in recorded} | {folder}
        for path in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if path != self.path and path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only when empty
        (self.path / MANIFEST_FILE).unlink(missing_ok=True)

    # --- config and metrics --------------------------------------------------------------

    def write_config(
        self,
        config: TrainConfig,
        history: list[dict[str, Any]],
        data: DatasetInfo | None = None,
    ) -> None:
        """``config.yaml``: the config's flat keys, the resume ``history`` and the ``data``
        description (kept from the saved file when ``data`` is None)."""
        if data is None:
            data = self.read_data_info()
        values: dict[str, Any] = {**config.to_dict(), "history": history}
        if data is not None:
            values["data"] = data.to_dict()
        text = yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
        self._write_text(CONFIG_FILE, text)

    def _write_text(self, name: str, text: str) -> None:
        path = self.path / name
        _no_link(path, self.path)
        atomic_write_text(path, text)
        self.record(path)

    def _read_config_file(self) -> tuple[TrainConfig, list[dict[str, Any]], dict[str, Any]]:
        path = self.path / CONFIG_FILE
        require_regular_file(path, ConfigError, "config file")
        if not path.is_file():
            raise ConfigError(f"config file {path} not found (is {self.path} a run directory?)")
        history: list[dict[str, Any]] = []
        data: dict[str, Any] = {}

        def pop_records(values: dict[str, Any]) -> dict[str, Any]:
            history.extend(values.pop("history", None) or [])
            data.update(values.pop("data", None) or {})
            return values

        config = TrainConfig.from_yaml(path, prepare=pop_records)
        try:  # held to the rules of the flags that made it
            config.validate()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return config, history, data

    def read_config(self) -> tuple[TrainConfig, list[dict[str, Any]]]:
        """The saved config and its resume history."""
        config, history, _ = self._read_config_file()
        return config, history

    def read_data_info(self) -> DatasetInfo | None:
        """The data set description the run was trained on (``None``: a run written before
        it was recorded, or no config yet)."""
        if not (self.path / CONFIG_FILE).is_file():
            return None
        config, _, data = self._read_config_file()
        if not data:
            return None
        return read_data_record(data, config, self.path / CONFIG_FILE)

    def _read_jsonl(self, name: str, upto_epoch: int | None) -> list[dict[str, Any]]:
        path = self.path / name
        require_regular_file(path, RunError, "record file")
        if not path.is_file():
            return []
        rows = []
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                if number - 1 == last:
                    # an append cut short (a kill or a full disk): its epoch never committed
                    warnings.warn(f"{path}:{number}: dropped a torn last record", stacklevel=3)
                    continue
                raise RunError(f"{path}:{number}: not a JSON record") from None
            rows.append(row)
        if upto_epoch is not None:
            rows = [r for r in rows if r.get("epoch", 0) <= upto_epoch]
        return rows

    def _write_jsonl(self, name: str, rows: list[dict[str, Any]]) -> None:
        self._write_text(name, "".join(json.dumps(r) + "\n" for r in rows))

    def _append_jsonl(self, name: str, rows: list[dict[str, Any]]) -> None:
        path = self.path / name
        _no_link(path, self.path)
        if not path.exists():
            self.record(path)
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))

    def read_metrics(self, upto_epoch: int | None = None) -> list[dict[str, Any]]:
        """The per-epoch records (those of epochs up to ``upto_epoch``)."""
        return self._read_jsonl(METRICS_FILE, upto_epoch)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        self._write_jsonl(METRICS_FILE, rows)

    def append_metrics(self, record: dict[str, Any]) -> None:
        self._append_jsonl(METRICS_FILE, [record])

    def read_steps(self, upto_epoch: int | None = None) -> list[dict[str, Any]]:
        """The per-step records (those of epochs up to ``upto_epoch``)."""
        return self._read_jsonl(STEPS_FILE, upto_epoch)

    def write_steps(self, rows: list[dict[str, Any]]) -> None:
        self._write_jsonl(STEPS_FILE, rows)

    def append_steps(self, rows: list[dict[str, Any]]) -> None:
        self._append_jsonl(STEPS_FILE, rows)

    # --- checkpoints ---------------------------------------------------------------------

    def commit(self, model: nn.Module, state: dict[str, Any], epoch: int) -> None:
        """Write the weights and training state of ``epoch`` as one unit (module docstring)."""
        folder = self._checkpoints_folder()
        folder.mkdir(parents=True, exist_ok=True)
        self.record(self.path / POINTER_FILE, self.path / WEIGHTS_FILE)
        tmp = folder / f".tmp-{_epoch_name(epoch)}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"epoch": str(epoch)})
            _after_commit_step("weights")
            torch.save({**state, "epoch": epoch}, tmp / STATE_FILE)
            _after_commit_step("state")
            for name in (WEIGHTS_FILE, STATE_FILE):
                set_file_mode(tmp / name)
            final = folder / _epoch_name(epoch)
            shutil.rmtree(final, ignore_errors=True)  # an uncommitted one from a crash
            os.rename(tmp, final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(exc) or writer_failed(exc):
                raise self._commit_failed(epoch, exc) from exc
            raise
        _after_commit_step("rename")
        self._write_text(POINTER_FILE, _epoch_name(epoch) + "\n")
        _after_commit_step("pointer")
        self._publish_weights(final / WEIGHTS_FILE)
        _after_commit_step("publish")
        self.clean_stale()
        (self.path / STATE_FILE).unlink(missing_ok=True)  # a legacy top-level state

    def _commit_failed(self, epoch: int, exc: BaseException) -> OSError:
        """The one-line error of a commit whose files could not be written (a full disk):
        what survives and how to go on."""
        kept = f"keeps epoch {epoch - 1}" if epoch > 1 else "has no complete epoch yet"
        after = f"the run {kept}; free space, then continue it with --resume {self.path}"
        if is_disk_full(exc) or low_on_space(self.path):
            code, what = errno.ENOSPC, "No space left on device"
        else:
            code, what = errno.EIO, f"Could not write ({str(exc).strip().splitlines()[0]})"
        return OSError(code, f"{what} while committing epoch {epoch}; {after}")

    def _publish_weights(self, source: Path) -> None:
        """``RUN/model.safetensors``: the committed weights, for users and other tools."""

        def link(tmp: Path) -> None:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)

        _no_link(self.path / WEIGHTS_FILE, self.path)
        atomic_write(self.path / WEIGHTS_FILE, link)

    def load_weights(self) -> tuple[dict[str, torch.Tensor], int]:
        """The committed weights: (state dict, epoch)."""
        path = self._checkpoint_dir() / WEIGHTS_FILE
        require_regular_file(path, RunError)
        if not path.is_file():
            raise RunError(f"{path}: missing weights of the committed checkpoint")
        try:
            return load_file(str(path)), _weights_epoch(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise RunError(f"{path}: not a readable safetensors file ({exc})") from None

    def load_state(self) -> dict[str, Any]:
        """The committed training state, read with ``weights_only=True``."""
        path = self._checkpoint_dir() / STATE_FILE
        require_regular_file(path, RunError)  # torch.load would block on a FIFO
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise RunError(f"{path}: missing training state of the committed checkpoint") from None
        except PermissionError as exc:
            raise RunError(f"{path}: cannot be read ({exc.strerror})") from None
        except Exception as exc:  # torch raises several types for a damaged file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"{path}: not a readable training state ({first})") from None


def _weights_epoch(path: Path) -> int:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return int((fh.metadata() or {}).get("epoch", 0))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable safetensors file ({exc})") from None


def default_run_dir(model: str, root: str | Path = "runs") -> Path:
    """A new directory name per run, as timm does: ``runs/<YYYYmmdd-HHMMSS>-<model>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{model}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def guard_output(path: str | Path, what: str, *, own_run: RunDir | None = None) -> Path:
    """``path``, unless writing it would replace a file of a run: a command's output (an
    ONNX file, figures) never overwrites a run's config, weights, records or checkpoints,
    nor any file of another run. ``own_run``: the run the command reads, whose figures and
    evaluation (not its config, records or weights) it may write anew."""
    path = Path(path)
    # the run holding the file: its folder, or the folder above (a run's viz/ figures)
    for folder in (path.parent, path.parent.parent):
        run = RunDir(folder)
        if not (folder.is_dir() and _has_records(folder) and run.owns(path)):
            continue
        mine = own_run is not None and os.path.abspath(own_run.path) == os.path.abspath(folder)
        if not (mine and path.name not in _CORE_FILES):
            raise ValueError(
                f"{what} {path} would overwrite a file of the run in {folder}; choose another path"
            )
    return path


def _has_records(folder: Path) -> bool:
    """Whether ``folder`` holds a run's records (config, metrics, weights, checkpoints, the
    list of its files), not merely files named like a run's figures (a run's viz/)."""
    return any(os.path.lexists(folder / name) for name in _CORE_FILES if name != LOCK_FILE)
