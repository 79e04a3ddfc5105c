"""A run directory: its files, its lock, and checkpoints committed one epoch at a time.

Layout of ``RUN/``::

    config.yaml                 the TrainConfig (flat keys) and a ``history`` of resumes
    metrics.jsonl               one JSON record per completed epoch
    steps.jsonl                 one record per optimiser step (loss, LR) of those epochs
    checkpoint                  pointer: the name of the last committed epoch directory
    checkpoints/epoch-NNNN/     model.safetensors + state.pt of that epoch
    model.safetensors           the last committed weights (a hard link, or a copy)
    curves.png, lambda.png      plots of the metrics
    .lock                       held (``flock``) by the process that trains in RUN

Commit of epoch N (:meth:`RunDir.commit`): both files are written into
``checkpoints/.tmp-epoch-NNNN-*``, the directory is renamed to ``epoch-NNNN``, then the
``checkpoint`` pointer is replaced atomically. The pointer is the commit: a kill or a full
disk at any instant leaves it naming a complete epoch (N − 1 or N). Temporaries and
uncommitted epoch directories are removed at the next start (:meth:`RunDir.clean_stale`).

``state.pt`` holds tensors and plain values only and is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .._io import atomic_write, atomic_write_text, set_file_mode
from .config import ConfigError, TrainConfig

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "WEIGHTS_FILE",
    "LoadedModel",
    "RunDir",
    "RunError",
    "load_model",
    "load_run",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
STEPS_FILE = "steps.jsonl"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
POINTER_FILE = "checkpoint"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"
PLOTS = ("curves.png", "lambda.png", "confusion.png", "eval.json")
RUN_FILES = (CONFIG_FILE, METRICS_FILE, STEPS_FILE, POINTER_FILE, WEIGHTS_FILE, STATE_FILE, *PLOTS)

# called after each step of a commit with the step's name; tests inject failures here
_after_commit_step: Callable[[str], None] = lambda step: None  # noqa: E731


class RunError(RuntimeError):
    """A run directory cannot be used as asked; the message says why and what to do."""


def _epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


class RunDir:
    """The files of one run in ``path`` (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path} is a file, not a run directory; choose another --out")

    # --- what is there -------------------------------------------------------------------

    def holds_run(self) -> bool:
        """Whether any file of a run is present (config, metrics, checkpoints)."""
        names = (*RUN_FILES, CHECKPOINTS_DIR)
        return self.path.is_dir() and any((self.path / n).exists() for n in names)

    def committed_epoch(self) -> int:
        """The last committed epoch, 0 when there is none."""
        pointer = self.path / POINTER_FILE
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

    def _checkpoint_dir(self) -> Path:
        epoch = self.committed_epoch()
        if epoch == 0:
            raise RunError(f"{self.path}: no committed checkpoint (no completed epoch)")
        folder = self.path / CHECKPOINTS_DIR / _epoch_name(epoch)
        return folder if folder.is_dir() else self.path

    # --- lock, cleaning, overwrite -------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive OS lock on ``RUN/.lock`` (released when the process dies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a") as handle:
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock
                yield
                return
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(
                    f"{self.path} is in use by another training process (lock {LOCK_FILE}); "
                    "wait for it or choose another --out"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def clean_stale(self) -> list[Path]:
        """Remove commit temporaries and epoch directories the pointer does not name."""
        folder = self.path / CHECKPOINTS_DIR
        if not folder.is_dir():
            return []
        keep = _epoch_name(self.committed_epoch())
        removed = [p for p in folder.iterdir() if p.name != keep]
        for p in removed:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return removed

    def clear(self) -> None:
        """Delete the run's own files (``--overwrite``); other files in RUN are kept."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / CHECKPOINTS_DIR, ignore_errors=True)

    # --- config and metrics --------------------------------------------------------------

    def write_config(self, config: TrainConfig, history: list[dict[str, Any]]) -> None:
        values = {**config.to_dict(), "history": history}
        text = yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
        atomic_write_text(self.path / CONFIG_FILE, text)

    def read_config(self) -> tuple[TrainConfig, list[dict[str, Any]]]:
        """The saved config and its resume history."""
        path = self.path / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"config file {path} not found (is {self.path} a run directory?)")
        history: list[dict[str, Any]] = []

        def pop_history(values: dict[str, Any]) -> dict[str, Any]:
            history.extend(values.pop("history", None) or [])
            return values

        return TrainConfig.from_yaml(path, prepare=pop_history), history

    def _read_jsonl(self, name: str, upto_epoch: int | None) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.is_file():
            return []
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunError(f"{path}:{number}: not a JSON record") from None
        if upto_epoch is not None:
            rows = [r for r in rows if r.get("epoch", 0) <= upto_epoch]
        return rows

    def _write_jsonl(self, name: str, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path / name, "".join(json.dumps(r) + "\n" for r in rows))

    def _append_jsonl(self, name: str, rows: list[dict[str, Any]]) -> None:
        with (self.path / name).open("a") as fh:
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
        folder = self.path / CHECKPOINTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
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
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _after_commit_step("rename")
        atomic_write_text(self.path / POINTER_FILE, _epoch_name(epoch) + "\n")
        _after_commit_step("pointer")
        self._publish_weights(final / WEIGHTS_FILE)
        _after_commit_step("publish")
        self.clean_stale()
        (self.path / STATE_FILE).unlink(missing_ok=True)  # a legacy top-level state

    def _publish_weights(self, source: Path) -> None:
        """``RUN/model.safetensors``: the committed weights, for users and other tools."""

        def link(tmp: Path) -> None:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)

        atomic_write(self.path / WEIGHTS_FILE, link)

    def load_weights(self) -> tuple[dict[str, torch.Tensor], int]:
        """The committed weights: (state dict, epoch)."""
        path = self._checkpoint_dir() / WEIGHTS_FILE
        if not path.is_file():
            raise RunError(f"{path}: missing weights of the committed checkpoint")
        try:
            return load_file(str(path)), _weights_epoch(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise RunError(f"{path}: not a readable safetensors file ({exc})") from None

    def load_state(self) -> dict[str, Any]:
        """The committed training state, read with ``weights_only=True``."""
        path = self._checkpoint_dir() / STATE_FILE
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


def load_run(
    run_dir: str | Path, *, data_dir: str | None = None, limit_test: int | None = None
) -> tuple[TrainConfig, Any, nn.Module, int]:
    """Rebuild a run's model with its committed weights: (config, data splits, model, epoch).

    ``data_dir`` overrides the run's data folder; ``limit_test`` its test subset (default:
    the run's own). The training split is limited to one sample (it is not needed).
    """
    from .build import build_data, build_model_for

    run = RunDir(run_dir)
    config, _ = run.read_config()
    if data_dir:
        config = config.replace(data_dir=str(Path(data_dir).resolve()))
    splits = build_data(config, limit_train=1, limit_test=limit_test)
    model = build_model_for(config, splits)
    weights, epoch = run.load_weights()
    _load_into(model, weights, run)
    return config, splits, model, epoch


def _load_into(model: nn.Module, weights: dict[str, torch.Tensor], run: RunDir) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RunError(
            f"{run.path}: the weights do not fit the configured model ({first})"
        ) from None


@dataclass
class LoadedModel:
    """A run's network with its committed weights, built without reading the data set."""

    config: TrainConfig
    model: nn.Module
    epoch: int
    classes: tuple[str, ...]
    image_size: int
    in_chans: int


def load_model(run_dir: str | Path) -> LoadedModel:
    """Rebuild a run's model from its config and weights alone (for prediction).

    Channels, image size and class names come from the data set's table entry; class names
    of an image folder are its ``train/`` subfolders when the folder is still there, else
    the class indices.
    """
    from ..data.registry import DATASET_SPECS
    from ..models.factory import create_model

    run = RunDir(run_dir)
    config, _ = run.read_config()
    weights, epoch = run.load_weights()
    spec = DATASET_SPECS[config.dataset]
    size = config.image_size if spec.resizable and config.image_size else spec.image_size
    head = weights.get("fc.weight")
    num_classes = int(head.shape[0]) if head is not None else len(spec.classes or ())
    classes: tuple[str, ...] = tuple(spec.classes or ())
    if not classes:
        folder = Path(config.data_dir or "") / "train"
        names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        classes = tuple(names) if len(names) == num_classes else tuple(map(str, range(num_classes)))
    model = create_model(
        config.model,
        image_size=size,
        num_classes=num_classes,
        in_chans=spec.in_chans,
        stages=config.stages,
        spec=config.spec,
    )
    _load_into(model, weights, run)
    return LoadedModel(config, model, epoch, classes, size, spec.in_chans)
