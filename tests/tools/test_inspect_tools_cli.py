"""python -m cvpack.tools.complexity / browse_dataset: a bad exp folder, override or dataset root is one line on
stderr and exit 2 (the convention of the other tools, cvpack/tools/_cli.py), not a traceback."""
import os

import pytest

from cvpack.tools import browse_dataset, complexity

RSN18 = os.path.join('projects', 'RSN', 'exps', 'RSN18.coco')


def _one_line_exit_2(capsys, fn, argv, *needles):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
    for n in needles:
        assert n in err, err


def test_complexity_bad_input_is_one_line(repo_root, tmp_path, capsys):
    exp = os.path.join(repo_root, RSN18)
    prog = 'python -m cvpack.tools.complexity: error:'
    _one_line_exit_2(capsys, complexity.main, [str(tmp_path / 'nope')], prog, 'exp folder not found')
    _one_line_exit_2(capsys, complexity.main, [str(tmp_path)], prog, 'not an exp folder')
    _one_line_exit_2(capsys, complexity.main, [exp, 'SOLVER.NOPE', '1'], prog, 'SOLVER.NOPE')
    _one_line_exit_2(capsys, complexity.main, [exp, 'SOLVER.MAX_ITER', '2.5'], prog, 'SOLVER.MAX_ITER')
    # a model that refuses its config when built (a traceback before)
    hsrnet = os.path.join(repo_root, 'projects', 'HSRNet', 'exps', 'hsrnet59.256x192.coco')
    _one_line_exit_2(capsys, complexity.main, [hsrnet, 'INPUT_SHAPE', '[250, 190]'], prog,
                     'HSRNet needs INPUT_SHAPE divisible by 16, got [250, 190]')


def test_complexity_help_names_the_module_and_overrides(capsys):
    with pytest.raises(SystemExit):
        complexity.main(['--help'])
    out = capsys.readouterr().out
    assert out.startswith('usage: python -m cvpack.tools.complexity') and 'KEY VALUE' in out


def test_browse_dataset_bad_input_is_one_line(repo_root, tmp_path, capsys):
    exp = os.path.join(repo_root, RSN18)
    prog = 'python -m cvpack.tools.browse_dataset: error:'
    out = ['--out', str(tmp_path / 'out')]
    _one_line_exit_2(capsys, browse_dataset.main, [str(tmp_path / 'nope')] + out, prog, 'exp folder not found')
    _one_line_exit_2(capsys, browse_dataset.main, [exp, '--n', '0'] + out, prog, '--n')
    _one_line_exit_2(capsys, browse_dataset.main, [exp, '--opts', 'SOLVER.NOPE', '1'] + out, prog, 'SOLVER.NOPE')
    _one_line_exit_2(capsys, browse_dataset.main, [exp, '--opts', 'DATASET.ROOT', str(tmp_path / 'no_root')] + out,
                     prog, 'no_root')
    assert not os.path.exists(tmp_path / 'out')
