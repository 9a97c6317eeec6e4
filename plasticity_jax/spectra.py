"""Hessian spectra of a run's checkpoints: `python -m plasticity_jax.spectra --workdir=DIR [--tasks=0,50]
[--order=100] [--draws=4]`.

For every checkpoint (after `t` tasks, i.e. at the start of task `t`) and every seed at once (vmapped), computes the
spectrum the in-run measurement logs as "start" (`engine.make_spectrum`: same probe set, same keys), with the
run's `config.curvature` settings overridden by the flags, and writes `DIR/spectra.npz`: each metric with leading
axes (seed, checkpoint) and `task`, the task index of each checkpoint. `plasticity_jax.results.load_run(DIR).spectra`
reads it back. Keep checkpoints of the tasks you want with `--config.keep_checkpoints_every=K` when training.
`--exact_ggn_probe_size=N` adds the exact GGN spectrum of N probe examples (`ggn_exact_*`, `curvature.gauss_newton`).
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from absl import app, flags
from tqdm.auto import tqdm

from plasticity_jax import config as config_lib
from plasticity_jax import engine, logs, results
from plasticity_jax import workdir as workdir_lib
from plasticity_jax.results import SPECTRA_FILE


def define_flags() -> None:
    """The command line's flags: defined when this module runs as a program, not on import (a notebook imports
    `compute_spectra` beside the other command lines' modules, whose flags share names)."""
    flags.DEFINE_string('workdir', None, 'Run directory (holds config.json and checkpoints/).')
    flags.DEFINE_list('tasks', [], 'Checkpoints to analyse, by tasks done; default: every checkpoint kept.')
    flags.DEFINE_integer('order', None, 'Lanczos steps per draw (default: the run config\'s curvature.order).')
    flags.DEFINE_integer('draws', None, 'Random vectors of stochastic Lanczos quadrature (curvature.draws).')
    flags.DEFINE_integer('probe_size', None, 'Examples of the probe set (curvature.probe_size).')
    flags.DEFINE_enum('kind', None, ['hessian', 'ggn', 'fisher'], 'Curvature matrix (curvature.kind).')
    flags.DEFINE_integer('exact_ggn_probe_size', None, 'Also the exact GGN spectrum of this many probe examples, '
                         'through its dual Gram matrix (curvature.exact_ggn_probe_size; 0: off).')
    flags.mark_flags_as_required(['workdir'])


def compute_spectra(workdir: str, tasks=None, **curvature_overrides) -> dict[str, np.ndarray]:
    """Spectra at the start of each checkpointed task in `tasks` (all if None); writes and returns them."""
    wanted = results.parse_tasks([] if tasks is None else [str(t) for t in tasks])  # None: every checkpoint
    config = results.load_run(workdir).config
    settings = set(config_lib.base_config().curvature)  # a run's stored config may predate some of them
    unknown = sorted(set(curvature_overrides) - settings)
    if unknown:
        raise ValueError(f'{unknown} are not curvature settings; valid: {sorted(settings)}')
    config.curvature.update({k: v for k, v in curvature_overrides.items() if v is not None})
    directory = os.path.abspath(os.path.join(workdir, engine.CHECKPOINT_DIR))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f'{workdir} has no checkpoints/ directory: was the run started?')
    train = engine.make_train(config)
    abstract_state = jax.eval_shape(jax.vmap(train.init), engine.seed_keys(config))
    spectrum = jax.jit(jax.vmap(train.spectrum_at_task_start, in_axes=(0, None)))
    # Traced before any checkpoint is read: a run without spectra (RL) is refused before the progress bar.
    jax.eval_shape(spectrum, abstract_state, train.data)

    available = workdir_lib.checkpoint_steps(directory)  # finished checkpoints only, never one being written
    chosen = available if wanted is None else sorted(set(wanted))
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ValueError(f'no checkpoint after tasks {missing} in {directory}; available: {available}')
    per_checkpoint, done = [], []
    for step in tqdm(chosen, unit='checkpoint'):
        try:
            state = workdir_lib.restore_state(directory, step, abstract_state)
        except Exception as error:
            if wanted is None and not os.path.isdir(os.path.join(directory, str(step))):
                # A running job removed it (it keeps only its newest checkpoints) while it was being read.
                print(f'checkpoint {step} was removed by the running job while it was read: skipped.')
                continue
            raise workdir_lib.WorkdirError(f'cannot read checkpoint {os.path.join(directory, str(step))} '
                                       f'({type(error).__name__}): choose other --tasks of {available}.') from None
        per_checkpoint.append(jax.device_get(spectrum(state, train.data)))
        done.append(step)
    if not per_checkpoint:
        raise workdir_lib.WorkdirError(f'no checkpoint of {directory} could be read: start again when the run has '
                                   'written new ones.')
    spectra = {name: np.stack([c[name] for c in per_checkpoint], axis=1) for name in per_checkpoint[0]}
    spectra['task'] = np.asarray(done)
    engine.atomic_write(os.path.join(workdir, SPECTRA_FILE), lambda f: np.savez(f, **spectra))
    return spectra


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logs.quiet_unless_verbosity_given()
    f = flags.FLAGS
    try:
        compute_spectra(f.workdir, f.tasks or None, order=f.order, draws=f.draws, probe_size=f.probe_size,
                        kind=f.kind, exact_ggn_probe_size=f.exact_ggn_probe_size)
    except (FileNotFoundError, ValueError, workdir_lib.WorkdirError) as error:
        sys.exit(f'error: {error}')
    print(f"Spectra written to {os.path.join(f.workdir, SPECTRA_FILE)}; "
          f"load with plasticity_jax.results.load_run('{f.workdir}').spectra")


if __name__ == '__main__':
    define_flags()
    app.run(main)
