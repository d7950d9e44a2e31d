import os
import sys

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # tests run from a checkout without `pip install -e .` too
    sys.path.insert(0, REPO_ROOT)

torch.set_num_threads(2)


@pytest.fixture(scope='session')
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope='session')
def coco_subset(repo_root):
    """Root of the shipped COCO 2017 subset (official layout)."""
    return os.path.join(repo_root, 'dataset', 'coco_subset')


@pytest.fixture(scope='session')
def mpii_subset(repo_root):
    return os.path.join(repo_root, 'dataset', 'mpii_subset')


@pytest.fixture
def one_thread():
    """One intra-op thread for CPU-heavy tests (two oversubscribe the shared 2-core machine), restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def log_capture(caplog):
    """``caplog`` that also sees records of the 'cvpack' and 'projects' loggers after an engine run in this
    process set them not to propagate (cvpack.engine.logger); attached only where propagation is off, so
    nothing is captured twice."""
    import logging
    attached = [lg for lg in (logging.getLogger('cvpack'), logging.getLogger('projects')) if not lg.propagate]
    for lg in attached:
        lg.addHandler(caplog.handler)
    yield caplog
    for lg in attached:
        lg.removeHandler(caplog.handler)


@pytest.fixture(autouse=True)
def _autograd_left_enabled():
    """A test (or code it calls in-process) that switches autograd off globally breaks every later test's backward
    ("element 0 of tensors does not require grad"): fail the culprit instead, and restore the mode."""
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail('the test left autograd disabled (torch.set_grad_enabled(False) without restoring it)')


class Evil:
    """A pickle payload: unpickling it calls os.system, which would create ``marker`` (the attack a weight file
    must never be able to make)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch %s' % self.marker,))


@pytest.fixture
def evil(tmp_path):
    """An :class:`Evil` whose marker is tmp_path/PWNED (assert it never appears)."""
    return Evil(str(tmp_path / 'PWNED'))


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """Serve tmp_path/www on 127.0.0.1: yields (folder, base URL). The torch hub cache (downloads) goes to
    tmp_path/hub, for this process (restored after) and for subprocesses (TORCH_HOME)."""
    import functools
    import http.server
    import threading
    root = tmp_path / 'www'
    root.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'hub'))
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    quiet = type('Quiet', (http.server.SimpleHTTPRequestHandler,), {'log_message': lambda *a, **k: None})
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, 'http://127.0.0.1:%d/' % server.server_address[1]
    server.shutdown()
    server.server_close()
    torch.hub.set_dir(old_hub)
