"""train.py / test.py / config.py command lines through the toy exp's real scripts: flags anywhere between the
KEY VALUE overrides, and a test.py crash written into test_log.txt as train.py writes its own into log.txt."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from cvpack.engine.args import parse_args, split_argv, test_parser, train_parser


def _run(exp, script, args, env):
    proc = subprocess.run([sys.executable, script] + [str(a) for a in args], cwd=exp, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize('argv, flags, opts', [
    (['SOLVER.MAX_ITER', '5', '--no-auto-resume'], ['--no-auto-resume'], ['SOLVER.MAX_ITER', '5']),
    (['A', '1', '-c', 'x.pth', 'B', '-1'], ['-c', 'x.pth'], ['A', '1', 'B', '-1']),   # a value may start with '-'
    (['--weights=w.pth', 'A', '--no-auto-resume', '--local_rank', '1'],
     ['--weights=w.pth', '--local_rank', '1'], ['A', '--no-auto-resume']),             # KEY then its VALUE, always
    (['--no-auto', 'A', '1', '--bogus'], ['--no-auto', '--bogus'], ['A', '1']),        # a prefix; argparse rejects
])
def test_split_argv(argv, flags, opts):
    assert split_argv(train_parser(), argv) == (flags, opts)


def test_parse_args_flags_after_overrides():
    a = parse_args(train_parser(), ['SOLVER.MAX_ITER', '5', '--no-auto-resume', '-c', 'x.pth', '--local-rank=1'])
    assert (a.no_auto_resume, a.resume, a.local_rank, a.opts) == (True, 'x.pth', 1, ['SOLVER.MAX_ITER', '5'])
    t = parse_args(test_parser(), ['TEST.IMS_PER_GPU', '4', '-i3', '--non-strict', 'TEST.FLIP', 'False'])
    assert (t.iter, t.non_strict, t.opts) == (3, True, ['TEST.IMS_PER_GPU', '4', 'TEST.FLIP', 'False'])
    with pytest.raises(SystemExit):
        parse_args(train_parser(), ['SOLVER.MAX_ITER', '5', '--bogus'])


@pytest.mark.slow
def test_flags_anywhere_and_test_crash_in_test_log(toy_exp, sub_env):
    exp, cfg = toy_exp
    out = cfg.OUTPUT_DIR
    rc, text = _run(exp, 'train.py', ['SOLVER.MAX_ITER', '2', 'SOLVER.CHECKPOINT_PERIOD', '2'], sub_env)
    assert rc == 0 and 'Iter: 2/2' in text, text[-3000:]
    # the flag after the overrides: a fresh run (the old checkpoints moved aside), not an override
    rc, text = _run(exp, 'train.py', ['SOLVER.MAX_ITER', '3', '--no-auto-resume', 'SOLVER.CHECKPOINT_PERIOD', '3'],
                    sub_env)
    assert rc == 0 and "--no-auto-resume: moved the previous run's" in text and 'Iter: 1/3' in text, text[-3000:]
    assert sorted(f for f in os.listdir(out) if f.startswith('iter-')) == ['iter-3.pth', 'iter-last.pth']
    with open(osp.join(out, 'config.json')) as f:
        assert json.load(f)['SOLVER']['CHECKPOINT_PERIOD'] == 3
    # test.py: -i after an override
    rc, text = _run(exp, 'test.py', ['TEST.IMS_PER_GPU', '3', '-i', '3'], sub_env)
    assert rc == 0 and 'test checkpoint: %s (from -i 3)' % osp.join(out, 'iter-3.pth') in text, text[-3000:]
    # a crash of test.py: in test_log.txt with its traceback, as on the console
    rc, text = _run(exp, 'test.py', ['TEST.IMS_PER_GPU', '3', '-i', '8'], sub_env)
    message = 'test checkpoint not found: %s' % osp.join(out, 'iter-8.pth')
    assert rc == 1 and message in text
    with open(osp.join(cfg.TEST_DIR, 'test_log.txt')) as f:
        log = f.read()
    assert 'cvpack.test ERROR: test stopped by FileNotFoundError: ' + message in log
    assert 'Traceback (most recent call last)' in log and 'resolve_test_checkpoint' in log


def test_config_py_log_after_an_override(toy_exp, sub_env, tmp_path):
    exp, _ = toy_exp
    out = tmp_path / 'elsewhere'
    rc, text = _run(exp, 'config.py', ['OUTPUT_DIR', out, '-log'], sub_env)
    assert rc == 0 and 'created output folder %s' % out in text, text[-2000:]
    assert osp.realpath(osp.join(exp, 'log')) == osp.realpath(str(out))


def test_config_py_log_into_a_file_is_one_line(toy_exp, tmp_path, capsys):
    """config.py -log OUTPUT_DIR F, F a file (or a folder below it): a FileExistsError / NotADirectoryError traceback
    from os.makedirs; now exit 2, one line naming OUTPUT_DIR, the link and why, and no ./log link made."""
    from cvpack.config import config_main
    exp, cfg = toy_exp
    (tmp_path / 'f').write_text('not a folder')
    for out, why in ((tmp_path / 'f', 'File exists'), (tmp_path / 'f' / 'sub', 'Not a directory')):
        with pytest.raises(SystemExit) as info:
            config_main(cfg, ['-log', 'OUTPUT_DIR', str(out)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count('\n') == 1, err
        assert err.endswith('error: -log: cannot create OUTPUT_DIR %s and its link %s: %s (%s)\n'
                            % (out, osp.join(exp, 'log'), why, out)), err
    assert not osp.lexists(osp.join(exp, 'log')) and (tmp_path / 'f').read_text() == 'not a folder'


@pytest.mark.parametrize('argv, message', [
    (['SOLVER.BASE_LR', '--no-auto-resume'], 'config key SOLVER.BASE_LR has no value: --no-auto-resume is a flag'),
    (['SOLVER.MAX_ITER', '5', 'SOLVER.BASE_LR', '-c', 'x.pth'], 'config key SOLVER.BASE_LR has no value: -c is a flag'),
    (['SOLVER.BASE_LR', '--bogus'], 'config key SOLVER.BASE_LR has no value: --bogus is a flag'),
    (['SOLVER.MAX_ITER', '5', 'SOLVER.BASE_LR'], 'config key SOLVER.BASE_LR has no value (it ends the command line'),
    (['--no-auto-resume', 'SEED'], 'config key SEED has no value (it ends the command line'),
])
def test_key_without_value_is_a_one_line_usage_error(argv, message, capsys):
    """The KEY took the flag as its VALUE (then failed in the value parser or, for a string key, silently became
    '--no-auto-resume') and a dangling KEY raised ValueError with a traceback: now exit 2 and one line."""
    with pytest.raises(SystemExit) as info:
        parse_args(train_parser(), argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count('\n') == 1 and err.startswith('%s: error: %s' % (train_parser().prog,
                                                                                                 message)), err


def test_negative_values_are_still_values():
    a = parse_args(test_parser(), ['SOLVER.BASE_LR', '-1', 'TEST.DET_SCORE_THRESH', '-0.5', '-i', '2'])
    assert a.opts == ['SOLVER.BASE_LR', '-1', 'TEST.DET_SCORE_THRESH', '-0.5'] and a.iter == 2
    # '-inf' / '-i3' spell test.py's -i flag; as a VALUE they are numbers for the schema to judge (it said
    # "-inf is a flag" for TEST.DET_SCORE_THRESH -inf)
    a = parse_args(test_parser(), ['TEST.DET_SCORE_THRESH', '-inf', 'SOLVER.BASE_LR', '-1e-3', '-i', '2'])
    assert a.opts == ['TEST.DET_SCORE_THRESH', '-inf', 'SOLVER.BASE_LR', '-1e-3'] and a.iter == 2


@pytest.mark.parametrize('script, args, message', [
    ('train.py', ['SOLVER.BASE_LR', '--no-auto-resume'],
     'error: config key SOLVER.BASE_LR has no value: --no-auto-resume is a flag'),
    ('test.py', ['TEST.FLIP'], 'error: config key TEST.FLIP has no value (it ends the command line'),
    ('config.py', ['SOLVER.MAX_ITER', '2.5'], 'error: config key SOLVER.MAX_ITER: 2.5 is not an integer'),
    ('config.py', ['SOLVER.BASE_RL', '1'], "error: unknown config key 'SOLVER.BASE_RL'"),
    ('config.py', ['-log', 'SEED'], 'error: config key SEED has no value'),
])
def test_real_scripts_usage_errors_are_one_line(toy_exp, sub_env, script, args, message):
    exp, cfg = toy_exp
    proc = subprocess.run([sys.executable, script] + args, cwd=exp, env=sub_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == '', (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0] and 'Traceback' not in proc.stderr, proc.stderr
    assert not os.path.exists(cfg.OUTPUT_DIR) and not os.path.lexists(os.path.join(exp, 'log'))
