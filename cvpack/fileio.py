"""File writing shared by the core and the tools (no torch import: the config layer uses it too)."""
import contextlib
import os
import os.path as osp

__all__ = ['atomic_output']


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path`` (same extension); on success it is renamed onto ``path``
    (os.replace: readers see the old file or the whole new one), on any exception it is removed. The folder is
    made when missing. (Checkpoints use their own fsynced variant: cvpack.engine.checkpoint.save_checkpoint.)"""
    folder, name = osp.split(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = osp.splitext(name)
    tmp = osp.join(folder, '.%s.tmp-%d%s' % (stem, os.getpid(), ext))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)
