"""Argument checks shared by the command-line tools (export, convert, demo, complexity, browse_dataset,
tools/quickstart.py).

A usage error or bad input ends the tool with exit code 2 and one line on stderr that names the argument or
the file, never a traceback (the convention of train.py / test.py, cvpack.engine.args). Output files are
checked before the slow work starts, and written through a temporary file renamed into place, so a failure
leaves no partial file under the name asked for.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

from ..fileio import atomic_output   # (re-exported: the tools write through it)

__all__ = ['UsageError', 'CliExit', 'die', 'OneLineParser', 'positive_int', 'nonnegative_int', 'positive_float',
           'check_output_file', 'check_writable_dir', 'check_exp_dir', 'atomic_output']


class UsageError(ValueError):
    """A bad argument; the message names it (shown as one line by :func:`die` / :meth:`OneLineParser.error`)."""


class CliExit(SystemExit):
    """SystemExit whose ``str()`` is the message already printed (``SystemExit(2)`` alone would read '2')."""

    def __init__(self, message, code=2):
        super().__init__(code)
        self.message = message

    def __str__(self):
        return self.message


def die(message, code=2):
    """Print ``message`` as one line on stderr and exit with ``code`` (2: usage error or bad input)."""
    line = ' '.join(str(message).split('\n'))
    print(line, file=sys.stderr, flush=True)
    raise CliExit(line, code)


class OneLineParser(argparse.ArgumentParser):
    """argparse without the usage block on errors: 'PROG: error: MESSAGE', one line, exit 2."""

    def error(self, message):
        die('%s: error: %s' % (self.prog, message))


def _number(kind, test, what):
    """An argparse ``type``: ``kind(text)`` when ``test`` holds, else the message 'must be WHAT, got TEXT'."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not test(value):
            raise argparse.ArgumentTypeError('must be %s, got %r' % (what, text))
        return value
    return parse


positive_int = _number(int, lambda v: v >= 1, 'an integer >= 1')
nonnegative_int = _number(int, lambda v: v >= 0, 'an integer >= 0')
positive_float = _number(float, lambda v: 0 < v < float('inf'), 'a number > 0')


def check_writable_dir(folder, what):
    """``folder`` exists, is a directory, and a file can be created in it (tried: os.access says yes to root
    on read-only mounts). Raises UsageError naming ``what``."""
    if not osp.isdir(folder):
        raise UsageError('%s: folder %s does not exist' % (what, folder))
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix='.cvpack-write-test-')
    except OSError as e:
        raise UsageError('%s: cannot write in folder %s (%s)' % (what, folder, e.strerror or e)) from None
    os.close(fd)
    os.remove(probe)


def check_exp_dir(exp_dir):
    """``exp_dir`` is a folder holding config.py and network.py; raises UsageError naming it otherwise."""
    missing = [f for f in ('config.py', 'network.py') if not osp.isfile(osp.join(exp_dir, f))]
    if missing:
        raise UsageError('%s: not an exp folder (no %s)' % (exp_dir, ' or '.join(missing)) if osp.isdir(exp_dir)
                         else 'exp folder not found: %s' % exp_dir)


def check_output_file(path, what='--out'):
    """The absolute path of output file ``path`` after checking it can be written: not a folder, and its folder
    exists and is writable, or is missing and can be made (the tools make it when they write, as they always
    did: ``--out model_logs/onnx/x.onnx``); nothing is created here. Raises UsageError naming ``what``."""
    path = osp.abspath(path)
    if osp.isdir(path):
        raise UsageError('%s %s: is a folder, give a file name' % (what, path))
    folder = osp.dirname(path)
    while not osp.isdir(folder):   # the nearest existing ancestor is where the folders would be made
        if osp.lexists(folder):
            raise UsageError('%s %s: %s is a file, not a folder' % (what, path, folder))
        folder = osp.dirname(folder)
    check_writable_dir(folder, '%s %s' % (what, path))
    return path

