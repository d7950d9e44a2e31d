import importlib.util
import os
import os.path as osp
import sys

import pytest

HERE = osp.dirname(osp.abspath(__file__))


@pytest.fixture(scope='session')
def toy():
    """The test-only exp parts module (tests/engine/toy_parts.py)."""
    if 'toy_parts' not in sys.modules:
        spec = importlib.util.spec_from_file_location('toy_parts', osp.join(HERE, 'toy_parts.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules['toy_parts'] = mod
    return sys.modules['toy_parts']


@pytest.fixture
def toy_exp(toy, tmp_path):
    """A runnable exp folder in tmp_path; returns (exp_dir, cfg) with cfg loaded through cvpack.load_exp."""
    from cvpack.exp import load_exp
    exp = toy.write_exp(tmp_path)
    cfg, _ = load_exp(exp, build=False)
    return exp, cfg


@pytest.fixture
def sub_env(repo_root):
    env = dict(os.environ)
    env.update(PYTHONPATH=repo_root, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(k, None)
    return env


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin-waits on the shared 2-core machine."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
