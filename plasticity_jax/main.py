"""Runs an experiment: `python -m plasticity_jax.main --config=configs/<experiment>.py[:variants] --workdir=DIR`.

Any config field can be overridden from the command line (`--config.model.width=100`); an unknown field is an error
that lists the valid fields. `--sweep=FIELD=V1,V2,...` sweeps a field (see `sweeps`): continuous learner fields inside
one program, structural ones (`model.width`, `learner.name`, ...) as one program each, run one after another in
DIR/<field>=<value>; `--program=i` runs program i alone, `--dry_run` lists the programs. Running the same command
again resumes from the latest checkpoint in DIR, skipping finished programs.
"""

from __future__ import annotations

import sys

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from plasticity_jax import config as config_lib
from plasticity_jax import data, engine, logs, sweeps, validation
from plasticity_jax import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config: configs/<experiment>.py[:variants].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the config, metrics and checkpoints of the run.')
_SWEEP = flags.DEFINE_multi_string(
    'sweep', [], 'Sweep a config field over values (repeat the flag for a grid): continuous learner fields all in one '
    'program, --sweep=learner.step_size=0.01,0.003,0.001; structural fields as one program each, run one after '
    'another in WORKDIR/<field>=<value>, --sweep=model.width=100,1000.')
_PROGRAM = flags.DEFINE_integer('program', None, 'Run only program i (from 0, as --dry_run lists them) of a sweep '
                                'over structural fields: spreads the programs over jobs or hosts.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print what would run (programs, runs per device, memory per '
                              'device) and exit without compiling or writing anything; reads no data (plans from '
                              'the datasets\' shapes).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Join a multi-process run (jax.distributed.initialize): detected automatically on Cloud '
    'TPU pods and under SLURM; elsewhere give --coordinator_address, --num_processes and --process_id.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, with --distributed.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes, with --distributed.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\'s index, with --distributed.')
flags.mark_flags_as_required(['config', 'workdir'])


def unknown_override(argv: list[str]) -> str | None:
    """What went wrong with `--config`: the config file's own error (a missing file, an unknown variant), else the
    first `--config.<field>` override that the config lacks, with the valid fields beside it; None if neither."""
    spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    if spec is None:
        return None
    try:
        config = config_lib.load(spec)
    except (OSError, ValueError, KeyError) as error:  # FileNotFoundError; an unknown variant or its argument
        return f'--config={spec}: {error.args[0] if error.args else error}'
    for arg in argv:
        if arg.startswith('--config.'):
            try:
                config_lib.field_parent(config, arg[len('--config.'):].split('=', 1)[0])
            except KeyError as error:
                return error.args[0]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a problem of `--config` reported in one line (absl wraps config errors in several types,
    and ml_collections defers a config file's load error to the first use of the config)."""
    try:
        remaining = flags.FLAGS(argv)
    except Exception as error:
        sys.exit(f'error: {unknown_override(argv) or error}')
    if _CONFIG.value is not None and not isinstance(_CONFIG.value, ml_collections.ConfigDict):
        try:
            _CONFIG.value.keys()  # raises the deferred error
        except OSError as error:
            sys.exit(f'error: {unknown_override(argv) or " ".join(str(error).split())}')
    return remaining


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logs.quiet_unless_verbosity_given()
    workdir = _WORKDIR.value
    if _DISTRIBUTED.value:
        jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # Collectives between CPU processes.
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    try:
        config = sweeps.with_sweep_flags(_CONFIG.value, _SWEEP.value)
        programs = sweeps.programs(config)
        chosen = sweeps.select(programs, _PROGRAM.value)
        for program in chosen:
            validation.check_config(program.config)
    except ValueError as error:
        sys.exit(f'error: {error}')
    structural = bool(programs[0].name)
    if _DRY_RUN.value:
        if structural:
            print(f'{len(programs)} programs, run one after another (--program=i runs program i alone):')
        for program in chosen:
            name = f'program {program.index}: {program.name}\n' if structural else ''
            plan = engine.make_plan(program.config)  # from shapes: needs no data
            print(f'{name}{plan.describe()}, in {program.workdir(workdir)}')
            try:
                engine.check_fits(plan)
            except MemoryError as error:
                print(str(error).splitlines()[-1])
        return
    try:
        engine.run_programs(config, workdir, only=_PROGRAM.value)
    except (validation.ConfigError, workdir_lib.WorkdirError, data.DataSourceError, MemoryError) as error:
        sys.exit(f'error: {error}')
    if jax.process_index() == 0:
        if structural:
            print(f'Results are in {workdir}/<program>: one run directory per program. '
                  f"Load them with plasticity_jax.results.load_runs('{workdir}').")
        else:
            print(f'Results are in {workdir}: metrics.npz, config.json, checkpoints/, tensorboard/. '
                  f"Load them with plasticity_jax.results.load_run('{workdir}').")
        print(f'Plot them: python -m plasticity_jax.plot --workdir={workdir} --out={workdir}/figures')


if __name__ == '__main__':
    app.run(main, flags_parser=parse_flags)
