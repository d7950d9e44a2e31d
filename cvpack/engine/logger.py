"""Text logging and tensorboardX scalars (spec §6 "Logger", bug #27).

Rank 0 logs to the console and to a file (``OUTPUT_DIR/log.txt`` for training, ``TEST_DIR/test_log.txt``
for testing) in the original format; other ranks only print warnings. The tensorboard writer is
created on rank 0 only (the original made one per rank: duplicate event files).
"""
import logging
import os
import os.path as osp
import sys

__all__ = ['setup_logger', 'TensorboardWriter']

_FMT = '%(asctime)s %(name)s %(levelname)s: %(message)s'


def setup_logger(name, log_file=None, rank=0):
    """Configure the ``cvpack`` logger tree and the named logger; returns the named logger.

    Handlers are replaced (not added) so repeated calls in one process do not duplicate lines.
    """
    root = logging.getLogger('cvpack')
    named = logging.getLogger(name)
    for lg in {root, named}:
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
        lg.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    root.propagate = False  # cvpack.* loggers reach these handlers through 'cvpack', once
    handlers = [logging.StreamHandler(sys.stdout)]
    if log_file and rank == 0:
        os.makedirs(osp.dirname(osp.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    fmt = logging.Formatter(_FMT if rank == 0 else '[rank %d] ' % rank + _FMT)
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
        if named is not root and not name.startswith('cvpack.'):
            named.addHandler(h)
    return named


class TensorboardWriter:
    """tensorboardX scalars on rank 0; a no-op elsewhere or when tensorboardX is missing."""

    def __init__(self, log_dir, enabled=True):
        self._writer = None
        if enabled and log_dir:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # optional: training still runs, only the scalars are lost
                logging.getLogger(__name__).warning('tensorboardX not installed: no tensorboard scalars')
                return
            self._writer = SummaryWriter(log_dir)

    def scalars(self, values, step):
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(k, float(v), step)

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
