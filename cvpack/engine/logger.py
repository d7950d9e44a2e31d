"""Text logging and tensorboardX scalars (docs/reference/rsn_mspn.md §6 "Logger", docs/reference/defects.md R#27).

Rank 0 logs to the console and to a file (``OUTPUT_DIR/log.txt`` for training, ``TEST_DIR/test_log.txt``
for testing) in the original format; other ranks only print warnings. The tensorboard writer is
created on rank 0 only (the original made one per rank: duplicate event files).
"""
import errno
import logging
import os
import os.path as osp
import sys

from .checkpoint import space_note
from .preemption import Preempted

__all__ = ['setup_logger', 'TensorboardWriter', 'ROOT_LOGGERS', 'log_fatal']

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


_WRITE_ERRNOS = {getattr(errno, n) for n in ('ENOSPC', 'EFBIG', 'EDQUOT', 'EROFS', 'EIO') if hasattr(errno, n)}


def log_fatal(exc, log_file, logger='cvpack.train', what='training'):
    """Write the exception that ends training (test.py: ``logger`` 'cvpack.test', ``what`` 'test'), with its
    traceback, to log.txt / test_log.txt (rank 0's file handler; the console already gets Python's traceback) as
    '<what> stopped by <type>: <message>'. A failed write (disk full, quota, ``ulimit -f``) also gets the
    path and the free space of its file system, unless the message already has them (checkpoint saves)."""
    if isinstance(exc, Preempted) or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return   # not a crash: preemption logs its own checkpoint and exit code
    files = [h for h in logging.getLogger('cvpack').handlers
             if isinstance(h, logging.FileHandler) and osp.abspath(h.baseFilename) == log_file]
    if not files:
        return
    note = ''
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS and not hasattr(exc, 'written_path'):
        # file.write() errors carry no file name: then say at least which folder and how much space is left
        where = exc.filename or osp.dirname(log_file)
        note = ' (writing %s; %s)' % (where, space_note(where))
    log = logging.getLogger(logger)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, '%s stopped by %s: %s%s',
                            (what, type(exc).__name__, exc, note), (type(exc), exc, exc.__traceback__))
    for handler in files:
        try:
            handler.handle(record)
        except Exception:  # a full disk may refuse this too; the console still has the traceback
            pass
