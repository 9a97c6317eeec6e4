"""scripts/reproduce_spectral_collapse.py's command line (its runs are the slow reproduction's)."""

import sys

import pytest

from tests.scripts import load_script


def test_summarize_only_without_finished_runs_is_one_line(tmp_path, monkeypatch, capsys):
    script = load_script('reproduce_spectral_collapse')
    monkeypatch.setattr(sys, 'argv', ['reproduce_spectral_collapse.py', f'--workdir={tmp_path}', '--summarize_only',
                                      '--learners=backprop'])
    with pytest.raises(SystemExit) as info:
        script.main()
    assert info.value.code == 2  # argparse's error, no traceback
    error = capsys.readouterr().err
    assert f'--summarize_only reads finished runs: {tmp_path}/backprop is not a run directory' in error
    assert 'run without --summarize_only first' in error
