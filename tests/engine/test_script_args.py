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
