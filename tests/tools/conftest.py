import importlib.util
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool(name):
    """tools/<name>.py (a script, not a package module) imported under a private module name."""
    spec = importlib.util.spec_from_file_location(name + '_under_test', osp.join(REPO, 'tools', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def load_tool():
    """``load_tool('quickstart')``: a tools/ script as a module."""
    return _load_tool
