"""Runs an experiment: `python -m plasticity_jax.main --config=configs/<experiment>.py[:variants] --workdir=DIR`.

Any config field can be overridden from the command line (`--config.model.width=100`); an unknown field is an error
that lists the valid fields. Running the same command again resumes from the latest checkpoint in DIR.
"""

from __future__ import annotations

import importlib.util
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from plasticity_jax import engine, sweeps

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config: configs/<experiment>.py[:variants].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the config, metrics and checkpoints of the run.')
_SWEEP = flags.DEFINE_multi_string(
    'sweep', [], 'Sweep a continuous learner field over values, all in one program: '
    '--sweep=learner.step_size=0.01,0.003,0.001 (repeat the flag for a grid).')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print what would run (programs, runs per device, memory per '
                              'device) and exit without compiling or writing anything.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Join a multi-process run (jax.distributed.initialize): detected automatically on Cloud '
    'TPU pods and under SLURM; elsewhere give --coordinator_address, --num_processes and --process_id.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, with --distributed.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes, with --distributed.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\'s index, with --distributed.')
flags.mark_flags_as_required(['config', 'workdir'])


def _load_config_file(spec: str):
    path, _, arg = spec.partition(':')
    module_spec = importlib.util.spec_from_file_location('experiment_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def unknown_override(argv: list[str]) -> str | None:
    """Names the first `--config.<field>` override that the config lacks, with the valid fields beside it."""
    spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    if spec is None:
        return None
    config = _load_config_file(spec)
    for arg in argv:
        if not arg.startswith('--config.'):
            continue
        path = arg[len('--config.'):].split('=', 1)[0].split('.')
        node, prefix = config, []
        for field in path:
            if not hasattr(node, 'keys') or field not in node:
                where = '.'.join(['config', *prefix])
                valid = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(none: it is a value)'
                return f"unknown config field '{'.'.join(path)}': {where} has no field {field!r}. Valid: {valid}"
            node, prefix = node[field], [*prefix, field]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except Exception as error:  # absl wraps config override errors in several types; explain the common one.
        message = unknown_override(argv) or str(error)
        sys.exit(f'error: {message}')


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not flags.FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO.
    workdir = _WORKDIR.value
    if _DISTRIBUTED.value:
        jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # Collectives between CPU processes.
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    config = sweeps.with_sweep_flags(_CONFIG.value, _SWEEP.value)
    if _DRY_RUN.value:
        plan = engine.make_plan(config)
        print(plan.describe())
        print(f'{config.num_tasks} tasks of {config.problem.examples_per_task} examples, '
                  f'a checkpoint every {config.tasks_per_chunk} tasks, in {workdir}')
        return
    engine.run(config, workdir)
    if jax.process_index() == 0:
        print(f'Results are in {workdir}: metrics.npz, config.json, checkpoints/. '
              f"Load them with plasticity_jax.results.load_run('{workdir}').")


if __name__ == '__main__':
    app.run(main, flags_parser=parse_flags)
