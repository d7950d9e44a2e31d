"""Text logging and tensorboardX scalars (docs/reference/rsn_mspn.md §6 "Logger", docs/reference/defects.md R#27).

Rank 0 logs to the console and to a file (``OUTPUT_DIR/log.txt`` for training, ``TEST_DIR/test_log.txt``
for testing) in the original format; other ranks only print warnings. The tensorboard writer is
created on rank 0 only (the original made one per rank: duplicate event files).
"""
import logging
import os
import os.path as osp
import sys

__all__ = ['setup_logger', 'TensorboardWriter', 'ROOT_LOGGERS']

_FMT = '%(asctime)s %(name)s %(levelname)s: %(message)s'


# Logger trees that get the engine's handlers: the library and the projects (project modules log under
# their import names, which start with 'projects'); without that tree their messages were dropped.
ROOT_LOGGERS = ('cvpack', 'projects')


def setup_logger(name, log_file=None, rank=0):
    """Configure the ``cvpack`` and ``projects`` logger trees and the named logger; returns the named logger.

    Handlers are replaced (not added) so repeated calls in one process do not duplicate lines.
    """
    roots = [logging.getLogger(n) for n in ROOT_LOGGERS]
    named = logging.getLogger(name)
    for lg in set(roots) | {named}:
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
        lg.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    # cvpack loggers reach these handlers through 'cvpack' only, once. The project tree keeps propagating:
    # the root logger has no handlers in train.py / test.py (so no line is doubled), and pytest's caplog,
    # which listens on the root logger, still sees the projects' records after an engine test ran.
    roots[0].propagate = False
    handlers = [logging.StreamHandler(sys.stdout)]
    if log_file and rank == 0:
        os.makedirs(osp.dirname(osp.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    fmt = logging.Formatter(_FMT if rank == 0 else '[rank %d] ' % rank + _FMT)
    under_root = any(name == n or name.startswith(n + '.') for n in ROOT_LOGGERS)
    for h in handlers:
        h.setFormatter(fmt)
        for root in roots:
            root.addHandler(h)
        if not under_root:
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
