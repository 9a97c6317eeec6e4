"""The Permuted MNIST benchmark's side-by-side with a peer's command (`--compare_command`)."""

import sys

from tests.scripts import load_script


def _script():
    return load_script('benchmark_permuted_mnist')


def test_the_peer_command_gets_the_point_and_its_last_figure_counts():
    script = _script()
    command = (f'{sys.executable} -c "import sys; w, s, n = {{width}}, {{seeds}}, {{steps}}; '
               'print(\'seed-steps/s: 1.0\'); print(\'seed-steps/s:\', w * 1000 + s * 10 + n)"')
    assert script.peer_seed_steps_per_s(command, width=7, seeds=3, steps=5) == (7035.0, '')


def test_a_peer_command_that_fails_or_reports_nothing_is_nan_with_the_reason():
    script = _script()
    figure, reason = script.peer_seed_steps_per_s('echo nothing {width} {seeds} {steps}', 1, 1, 1)
    assert figure != figure and 'printed no "seed-steps/s: X" line' in reason and 'echo nothing 1 1 1' in reason
    figure, reason = script.peer_seed_steps_per_s('echo "seed-steps/s: 5"; echo Killed; exit 137', 1, 1, 1)
    assert figure != figure and 'exited 137' in reason and reason.endswith('Killed')
