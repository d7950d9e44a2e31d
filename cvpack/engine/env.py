"""What produced a run, for ``OUTPUT_DIR/config.json`` (as detectron2's ``default_setup`` logs it): the git
commit and dirty state of the code, Python / torch / CUDA / cuDNN versions and the command line."""
import os.path as osp
import platform
import subprocess
import sys

import torch

__all__ = ['git_state', 'collect_env']


def _git(path, *args):
    try:
        res = subprocess.run(['git', '-C', path] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=10, check=False, universal_newlines=True)
    except (OSError, subprocess.TimeoutExpired):   # no git executable, or a hung network file system
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_state(path):
    """``{'root', 'commit', 'dirty'}`` of the git checkout holding ``path``, or None outside a checkout
    (an installed wheel, a copied folder) or without git. ``dirty``: tracked files differ from the commit
    (untracked files such as run outputs under the checkout do not count)."""
    root = _git(path, 'rev-parse', '--show-toplevel')
    commit = root and _git(path, 'rev-parse', 'HEAD')
    if not commit:
        return None
    status = _git(path, 'status', '--porcelain', '--untracked-files=no')
    return {'root': root, 'commit': commit, 'dirty': None if status is None else bool(status)}


def collect_env(exp_dir=None):
    """Environment record of this process. ``git``: the checkout holding cvpack; ``exp_git``: the one holding
    ``exp_dir`` when that is a different checkout (an exp kept in its own repository). Keys whose source is
    absent are left out."""
    env = {'command': list(sys.argv), 'executable': sys.executable, 'python': platform.python_version(),
           'torch': torch.__version__, 'cuda': torch.version.cuda,
           'cudnn': torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           'cuda_devices': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    code = git_state(osp.dirname(osp.abspath(__file__)))
    if code:
        env['git'] = code
    if exp_dir and osp.isdir(exp_dir):
        exp = git_state(exp_dir)
        if exp and (not code or exp['root'] != code['root']):
            env['exp_git'] = exp
    return env
