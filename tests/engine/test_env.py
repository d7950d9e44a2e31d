"""config.json's '_ENV' record: git commit / dirty state of a checkout, versions, command line."""
import json
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

from cvpack.engine.env import collect_env, git_state


def _git(repo, *args):
    return subprocess.run(['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@t'] + list(args),
                          check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    if shutil.which('git') is None:
        pytest.skip('git not installed')
    r = tmp_path / 'repo'
    (r / 'exp').mkdir(parents=True)
    _git(r, 'init', '-q')
    (r / 'exp' / 'config.py').write_text('cfg = 1\n')
    _git(r, 'add', '-A')
    _git(r, 'commit', '-q', '-m', 'init')
    return r


def test_git_state_commit_and_dirty(repo):
    head = _git(repo, 'rev-parse', 'HEAD')
    state = git_state(str(repo / 'exp'))
    assert state == {'root': _git(repo, 'rev-parse', '--show-toplevel'), 'commit': head, 'dirty': False}
    (repo / 'outputs.log').write_text('untracked run output\n')     # untracked files do not count
    assert git_state(str(repo))['dirty'] is False
    (repo / 'exp' / 'config.py').write_text('cfg = 2\n')            # a modified tracked file does
    assert git_state(str(repo)) == dict(state, dirty=True)


def test_git_state_outside_a_checkout(tmp_path):
    (tmp_path / 'plain').mkdir()
    assert git_state(str(tmp_path / 'plain')) is None
    assert git_state(str(tmp_path / 'absent')) is None


def test_collect_env_versions_command_and_exp_checkout(repo, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['train.py', 'SOLVER.MAX_ITER', '7'])
    env = collect_env(str(repo / 'exp'))
    assert env['command'] == ['train.py', 'SOLVER.MAX_ITER', '7']
    assert (env['torch'], env['cuda'], env['executable']) == (torch.__version__, torch.version.cuda, sys.executable)
    assert env['exp_git']['commit'] == _git(repo, 'rev-parse', 'HEAD')
    code = git_state(osp.dirname(osp.abspath(__import__('cvpack').__file__)))
    assert env.get('git') == code          # the toolbox's own checkout, when it is one
    assert 'exp_git' not in collect_env(osp.dirname(osp.abspath(__import__('cvpack').__file__))) or code is None


def test_config_json_has_env(toy_exp, monkeypatch):
    from cvpack.engine.utils import resolve_cfg, write_run_files
    _, cfg = toy_exp
    cfg = resolve_cfg(cfg, [])
    monkeypatch.setattr(sys, 'argv', ['train.py', '--resume'])
    write_run_files(cfg, {'WORLD_SIZE': 1})
    data = json.load(open(osp.join(cfg.OUTPUT_DIR, 'config.json')))
    assert data['_RUNTIME'] == {'WORLD_SIZE': 1}
    assert data['_ENV']['command'] == ['train.py', '--resume'] and data['_ENV']['torch'] == torch.__version__
