"""Live metrics: the TensorBoard event files hold every task's scalars per seed and the seed mean, per sweep point."""

import struct

import numpy as np
from tensorboardX.proto import event_pb2

from plasticity_jax import live_metrics, sweeps


def read_scalars(folder):
    """{tag: {step: value}} of every event file in `folder` (TFRecord: length, crc, event, crc)."""
    scalars = {}
    for path in sorted(folder.glob('events.out.tfevents.*')):
        blob = path.read_bytes()
        offset = 0
        while offset < len(blob):
            (length,) = struct.unpack('<Q', blob[offset:offset + 8])
            event = event_pb2.Event.FromString(blob[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_each_point_gets_a_run_per_seed_and_the_mean(tmp_path):
    grid = sweeps.Grid(names=('learner.step_size',), points=np.array([[0.01], [0.001]]))
    runs = sweeps.Runs(grid=grid, num_seeds=2, num_padded=4)
    rng = np.random.default_rng(0)
    chunk = {'online_accuracy': rng.random((4, 3)), 'dead_fraction': rng.random((4, 3, 2)),
             'hessian_density': rng.random((4, 3, 2, 5)), 'nonfinite_steps': np.zeros((4, 3))}
    with live_metrics.LiveMetrics(str(tmp_path), runs, first_task=5) as live:
        live.write(chunk, first_task=5)
    board = tmp_path / live_metrics.DIRECTORY
    assert sorted(p.name for p in board.iterdir()) == ['step_size=0.001', 'step_size=0.01']
    assert sorted(p.name for p in (board / 'step_size=0.01').iterdir()) == ['mean', 'seed_0', 'seed_1']
    seed_1_of_point_1 = read_scalars(board / 'step_size=0.001' / 'seed_1')
    assert set(seed_1_of_point_1) == {'online_accuracy', 'dead_fraction/0', 'dead_fraction/1', 'nonfinite_steps'}
    np.testing.assert_allclose([seed_1_of_point_1['online_accuracy'][t] for t in (5, 6, 7)],
                               chunk['online_accuracy'][3], rtol=1e-6)
    np.testing.assert_allclose([seed_1_of_point_1['dead_fraction/1'][t] for t in (5, 6, 7)],
                               chunk['dead_fraction'][3, :, 1], rtol=1e-6)
    mean_of_point_0 = read_scalars(board / 'step_size=0.01' / 'mean')
    np.testing.assert_allclose([mean_of_point_0['online_accuracy'][t] for t in (5, 6, 7)],
                               chunk['online_accuracy'][:2].mean(axis=0), rtol=1e-6)


def test_without_a_sweep_the_seeds_are_at_the_top_and_disabled_writes_nothing(tmp_path):
    runs = sweeps.Runs(grid=sweeps.Grid(names=(), points=np.zeros((1, 0))), num_seeds=1, num_padded=1)
    chunk = {'online_mse': np.ones((1, 2)), 'nonfinite_steps': np.zeros((1, 2))}
    with live_metrics.LiveMetrics(str(tmp_path / 'on'), runs) as live:
        live.write(chunk, first_task=0)
    assert sorted(p.name for p in (tmp_path / 'on' / live_metrics.DIRECTORY).iterdir()) == ['mean', 'seed_0']
    assert read_scalars(tmp_path / 'on' / live_metrics.DIRECTORY / 'seed_0')['online_mse'] == {0: 1.0, 1: 1.0}
    with live_metrics.LiveMetrics(str(tmp_path / 'off'), runs, enabled=False) as live:
        live.write(chunk, first_task=0)
    assert not (tmp_path / 'off').exists()


def test_values_that_are_not_finite_are_gaps_not_points(tmp_path):
    """An unresolved epsilon-rank (NaN) in one seed: no point for that seed or the mean at that task; the other seed's
    value is written. tensorboardX would otherwise warn on every such value."""
    runs = sweeps.Runs(grid=sweeps.Grid(names=(), points=np.zeros((1, 0))), num_seeds=2, num_padded=2)
    rank = np.array([[0.5, np.nan, 0.25], [0.5, 0.75, np.inf]])
    chunk = {'hessian_epsilon_rank': rank, 'nonfinite_steps': np.zeros((2, 3))}
    with live_metrics.LiveMetrics(str(tmp_path), runs) as live:
        live.write(chunk, first_task=0)
    board = tmp_path / live_metrics.DIRECTORY
    assert read_scalars(board / 'seed_0')['hessian_epsilon_rank'] == {0: 0.5, 2: 0.25}
    assert read_scalars(board / 'seed_1')['hessian_epsilon_rank'] == {0: 0.5, 1: 0.75}
    assert read_scalars(board / 'mean')['hessian_epsilon_rank'] == {0: 0.5}
