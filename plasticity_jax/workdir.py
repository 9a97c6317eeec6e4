"""A run's directory and the guarantees around it: what the host loop (`engine.run`) reads and writes.

    config.json        the resolved config (written once the run has been built, never by a failed start)
    metrics.npz        name -> (run, task) arrays, rewritten atomically after every chunk
    checkpoints/<t>/   orbax checkpoint after t tasks: item `state` (the `RunState`) and item `history` (the
                       metrics of tasks 0..t-1, so metrics.npz can always be rebuilt and checked)
    damaged_checkpoints/<t>[.k]/   checkpoints that could not be read, moved aside (never deleted)
    .lock              held (flock) by the process that runs in the directory; the OS drops it when that process
                       ends, however it ends

The durability each of these gives is in docs/durability.md.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.npz'
CHECKPOINT_DIR = 'checkpoints'
DAMAGED_DIR = 'damaged_checkpoints'
LOCK_FILE = '.lock'
# In the parent workdir of a structural sweep (`run_programs`): its whole config; each program has its own workdir.
SWEEP_CONFIG_FILE = 'sweep_config.json'
# Items of a checkpoint; checkpoints written before metrics were kept in them hold the state as `default`.
STATE_ITEM, HISTORY_ITEM, LEGACY_STATE_ITEM = 'state', 'history', 'default'
# Fields that may change when a run is resumed: they change neither the program's results nor the data.
RESUMABLE_CHANGES = ('num_tasks', 'tasks_per_chunk', 'keep_checkpoints', 'keep_checkpoints_every', 'data_dir',
                     'step_unroll')
# Fields added to the configs after runs were written without them, each with the value the code used when it was
# absent: a run whose config lacks one resumes under a config that holds that value.
FIELDS_ADDED_LATER = {'env.solver_iterations': None, 'env.ls_iterations': None, 'env.integrator': None,
                      'model.blocks_per_stage': 2, 'metrics.dead_max_active_share': 0.0,
                      'curvature.exact_ggn_probe_size': 0}


class WorkdirError(ValueError):
    """A workdir that cannot be used as asked; the message names the file and the fix."""


def atomic_write(path: str, write: Callable[[Any], None], mode: str = 'wb') -> None:
    """Writes through a temporary file and renames it, so a reader never sees a half-written file."""
    tmp = f'{path}.tmp.{os.getpid()}'
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_metrics(workdir: str, history: dict[str, np.ndarray]) -> None:
    atomic_write(os.path.join(workdir, METRICS_FILE), lambda f: np.savez(f, **history))


def load_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file written by `atomic_write`; {} if there is none yet."""
    if not os.path.exists(path):
        return {}
    try:
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # zipfile, pickle and value errors: a file this package did not write
        raise WorkdirError(f'cannot read {path} ({type(error).__name__}: {error}): move it aside; a run directory '
                           'rebuilds its metrics.npz from its checkpoints when resumed.') from None


def num_tasks_in(history: dict[str, np.ndarray]) -> int:
    return history['nonfinite_steps'].shape[1] if history else 0


# ----------------------------------------------------------------------------------------------------------------
# The config.


def _flat(tree: dict, prefix: str = '') -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def resolved(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort())


def check_same_experiment(workdir: str, config: ml_collections.ConfigDict, filename: str = CONFIG_FILE) -> None:
    """Refuses to resume a workdir whose config differs from `config` in a field that changes the results, naming
    every such field by its dotted name; `RESUMABLE_CHANGES` may differ. Writes nothing."""
    path = os.path.join(workdir, filename)
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            existing = _flat(json.load(f))
    except (OSError, ValueError) as error:
        raise WorkdirError(f'cannot read {path} ({error}): restore it, or use a new --workdir.') from None
    new = _flat(resolved(config))
    for field, value in FIELDS_ADDED_LATER.items():
        if field in new and field not in existing:
            existing[field] = value
    differs = sorted(k for k in set(existing) | set(new)
                     if k.split('.')[0] not in RESUMABLE_CHANGES and existing.get(k) != new.get(k))
    if differs:
        shown = '; '.join(f'{k}: {existing.get(k, "(absent)")!r} there, {new.get(k, "(absent)")!r} now'
                          for k in differs[:8])
        more = f' and {len(differs) - 8} more' if len(differs) > 8 else ''
        raise WorkdirError(f'{workdir} holds a run with a different config ({shown}{more}); use a new --workdir, '
                           f'or the config of {path} to resume it.')


def write_config(workdir: str, config: ml_collections.ConfigDict, filename: str = CONFIG_FILE) -> None:
    atomic_write(os.path.join(workdir, filename),
                 lambda f: json.dump(resolved(config), f, indent=2, sort_keys=True), mode='w')


# ----------------------------------------------------------------------------------------------------------------
# The lock.


class Lock:
    """An exclusive `flock` on `<workdir>/.lock` for as long as the run lasts: a second process on the same workdir
    is refused at once. The OS releases the lock when the holder ends, also on kill -9, so it never goes stale.
    Only process 0 of a multi-host run takes it (the others write only their checkpoint shards).

    Creates `workdir` if needed, and removes it again if the run fails before writing anything into it."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_FILE)
        self.file: Any = None  # the open lock file while held
        self.created = False

    def __enter__(self) -> Lock:
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            raise WorkdirError(f'{self.workdir} is a file, not a directory: choose another --workdir.')
        self.created = not os.path.exists(self.workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.file = open(self.path, 'a+')
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or 'another process'
            self.file.close()
            raise WorkdirError(f'{os.path.dirname(self.path)} is in use by {holder} (it holds {self.path}): wait '
                               'for it to finish, or use another --workdir. The lock goes away with its process.'
                               ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
        self.file.flush()
        return self

    def __exit__(self, error_type, *_) -> None:
        self.file.truncate(0)
        if error_type is not None and self.created and os.listdir(self.workdir) == [LOCK_FILE]:
            os.remove(self.path)  # a failed start leaves no trace
            os.rmdir(self.workdir)
        self.file.close()  # releases the flock


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints.


def checkpoint_steps(directory: str) -> list[int]:
    """Tasks done at each finished checkpoint in `directory`, ascending. Orbax writes a checkpoint under a temporary
    name and renames it when complete, so a save in progress (another process's) is never listed."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory)
                  if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def restore_state(directory: str, step: int, target: Any) -> Any:
    """The `RunState` of checkpoint `step`, with the shapes, dtypes and shardings of `target` (concrete or
    abstract arrays)."""
    path = os.path.join(directory, str(step))
    item = STATE_ITEM if os.path.isdir(os.path.join(path, STATE_ITEM)) else LEGACY_STATE_ITEM
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(os.path.join(path, item), target)


def restore_history(directory: str, step: int) -> dict[str, np.ndarray] | None:
    """The metrics of the tasks before checkpoint `step`; {} for step 0, None if the checkpoint predates them."""
    path = os.path.join(directory, str(step), HISTORY_ITEM)
    if not os.path.isdir(path):
        return {} if step == 0 else None
    with ocp.StandardCheckpointer() as checkpointer:
        return {name: np.asarray(value) for name, value in checkpointer.restore(path).items()}


def save_args(state: Any, history: dict[str, np.ndarray]) -> ocp.args.Composite:
    items = {STATE_ITEM: ocp.args.StandardSave(state)}
    if history:
        items[HISTORY_ITEM] = ocp.args.StandardSave(history)
    return ocp.args.Composite(**items)


def move_aside(workdir: str, step: int) -> str:
    """Moves damaged checkpoint `step` to `<workdir>/damaged_checkpoints/<step>[.k]`; returns where it went."""
    os.makedirs(os.path.join(workdir, DAMAGED_DIR), exist_ok=True)
    destination, k = os.path.join(workdir, DAMAGED_DIR, str(step)), 0
    while os.path.exists(destination):
        k += 1
        destination = os.path.join(workdir, DAMAGED_DIR, f'{step}.{k}')
    shutil.move(os.path.join(workdir, CHECKPOINT_DIR, str(step)), destination)
    return destination


class Restored(NamedTuple):
    step: int  # tasks done; 0 with `state` None when there is no intact checkpoint
    state: Any
    history: dict[str, np.ndarray] | None


def restore_latest(workdir: str, target: Any, *, writer: bool) -> Restored:
    """The newest checkpoint that can be read. A damaged one (a truncated or missing file, a broken _METADATA) is
    moved aside by process 0 (`move_aside`), with a message saying which one is resumed from instead."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    for step in reversed(checkpoint_steps(directory)):
        try:
            return Restored(step, restore_state(directory, step, target), restore_history(directory, step))
        except Exception as error:  # orbax / tensorstore / json errors of every kind: the checkpoint is unreadable
            reason = f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'[:300]
            where = move_aside(workdir, step) if writer else 'aside by process 0'
            message = (f'checkpoint {os.path.join(directory, str(step))} cannot be read ({reason}); moved to '
                       f'{where}, falling back to the previous checkpoint.')
            logging.warning(message)
    return Restored(0, None, None)


def same_arrays(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc')


def reconcile_metrics(workdir: str, step: int, history: dict[str, np.ndarray] | None,
                      *, writer: bool) -> dict[str, np.ndarray]:
    """The metrics of tasks 0..step-1, checked against (or rebuilt from) the checkpoint's copy `history`.

    metrics.npz may hold more tasks than the checkpoint (a kill between writing it and finishing the checkpoint):
    the extra tasks are run again. It may hold fewer (deleted, or copied from elsewhere): it is rebuilt from the
    checkpoint. Values that differ from the checkpoint's are refused, as is a shortfall that the checkpoint (one
    written before it kept metrics) cannot make up.
    """
    path = os.path.join(workdir, METRICS_FILE)
    on_disk = load_npz(path)
    if step == 0:  # nothing to check; any tasks in metrics.npz are run again and rewritten
        return {}
    if history is None:  # a checkpoint from before metrics were kept in checkpoints
        if num_tasks_in(on_disk) < step:
            raise WorkdirError(f'{path} holds {num_tasks_in(on_disk)} tasks but the newest checkpoint is after task '
                               f'{step}, and it predates checkpoints that keep metrics, so they cannot be rebuilt: '
                               'restore metrics.npz, or rerun in a new --workdir.')
        return {name: values[:, :step] for name, values in on_disk.items()}
    if on_disk:
        if num_tasks_in(on_disk) < step:
            logging.warning('%s holds %d tasks, the checkpoint %d: rebuilding it from the checkpoint.', path,
                            num_tasks_in(on_disk), step)
        else:
            differs = sorted(set(on_disk) ^ set(history)) or sorted(
                name for name in history if not same_arrays(on_disk[name][:, :step], history[name]))
            if differs:
                raise WorkdirError(f'{path} disagrees with the checkpoint after task {step} (metrics {differs[:5]}): '
                                   'it belongs to another run. Move it aside and start the same command again to '
                                   'rebuild it from the checkpoints, or use a new --workdir.')
            return history
    else:
        logging.warning('%s is missing: rebuilding it from the checkpoint after task %d.', path, step)
    if writer:
        save_metrics(workdir, history)
    return history
