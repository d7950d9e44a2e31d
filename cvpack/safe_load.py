"""Reading weight files without running code, from a path or a URL, with errors that name the file.

Every weight or checkpoint read in cvpack goes through :func:`load_file` (or its two halves):

* PyTorch files (``torch.save``; zip or legacy format) are read with ``torch.load(weights_only=True)``: tensors,
  numbers, strings, lists, tuples, dicts and ``OrderedDict`` only. Numpy arrays and scalars are admitted too
  (their reconstructors only build arrays), and a short list of foreign *metadata* classes that training
  frameworks put next to the weights (mmengine's ``HistoryBuffer``, ``ConfigDict``, ...) is read as inert
  :class:`Inert` placeholders: their data is kept, no method of theirs ever runs.
* Pickles (``.pkl``, Detectron2's model zoo) go through :class:`ArrayUnpickler`, which admits numpy arrays, dtypes,
  dicts, lists, strings and numbers and refuses every other global.
* Anything else (a ``__reduce__`` calling ``os.system``, a pickled class of unknown origin) is refused with
  :class:`UnsafeFileError`, naming the file and the globals it wanted, before any of them is imported.

A URL is downloaded once into ``$TORCH_HOME/hub/checkpoints`` (atomically; a body shorter than its Content-Length
is an error, never a cached file; each URL gets its own file, :func:`url_cache_path`) and then read like
a local file; nothing is unpickled on the way. Torch's own hint to retry with ``weights_only=False`` never reaches the
user: that is exactly what must not be done with a file from the internet.
"""
import codecs
import collections
import hashlib
import os
import os.path as osp
import pickle
import pickletools
import shutil
import urllib.request
import zipfile
from urllib.parse import urlparse

import numpy as np
import torch

__all__ = ['CheckpointError', 'UnsafeFileError', 'Inert', 'is_url', 'hand_placed_path', 'url_cache_path',
           'resolve_source', 'load_torch_file', 'load_pickle_file', 'load_file']


class CheckpointError(RuntimeError):
    """A weight file that cannot be used; ``path`` names it, the message says what is wrong."""

    def __init__(self, path, reason):
        self.path, self.reason = str(path), reason
        super().__init__('%s: %s' % (path, reason))


class UnsafeFileError(CheckpointError):
    """A file whose unpickling would import or call something other than plain data; nothing of it ran."""


class Inert:
    """Stands in for a foreign metadata object (e.g. mmengine's ``HistoryBuffer``) inside a weight file.

    It never imports or calls the original class: the pickled arguments and state are kept as data.
    """

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return '<Inert placeholder>'


# Foreign classes seen in released checkpoints next to the weights (training-state metadata only). They are read
# as Inert placeholders; listing a name here never imports its module.
METADATA_GLOBALS = (
    'mmengine.logging.history_buffer.HistoryBuffer',
    'mmengine.config.config.ConfigDict',
    'mmcv.utils.config.ConfigDict',
    'addict.addict.Dict',
    'easydict.EasyDict',
    'collections.defaultdict',
    'argparse.Namespace',
)

_NUMPY_GLOBALS = {
    # (module, name) as they appear in numpy 1.x and 2.x pickles -> the object that rebuilds arrays.
    ('numpy.core.multiarray', '_reconstruct'): np.ndarray.__reduce__(np.zeros(0))[0],
    ('numpy._core.multiarray', '_reconstruct'): np.ndarray.__reduce__(np.zeros(0))[0],
    ('numpy.core.multiarray', 'scalar'): np.float32(0).__reduce__()[0],
    ('numpy._core.multiarray', 'scalar'): np.float32(0).__reduce__()[0],
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): codecs.encode,  # protocol-2 pickles store bytes as _codecs.encode(str, 'latin1')
}


def _numpy_dtype_classes():
    """numpy 2's ``numpy.dtypes.Float32DType`` etc., which pickles of dtypes may name."""
    out = {}
    dtypes = getattr(np, 'dtypes', None)
    for name in dir(dtypes) if dtypes is not None else ():
        obj = getattr(dtypes, name)
        if isinstance(obj, type) and name.endswith('DType'):
            out[('numpy.dtypes', name)] = obj
    return out


_NUMPY_GLOBALS.update(_numpy_dtype_classes())


def _torch_safe_globals():
    """The extra globals torch's weights-only unpickler may accept: numpy's array rebuilders and the inert stubs."""
    safe = [(obj, '%s.%s' % key) for key, obj in _NUMPY_GLOBALS.items()]
    safe += [(type('Inert_' + name.rsplit('.', 1)[1], (Inert,), {}), name) for name in METADATA_GLOBALS]
    return safe


def is_url(source):
    return str(source).startswith(('http://', 'https://'))


def hand_placed_path(url):
    """torch.hub's place for ``url``'s file: ``$TORCH_HOME/hub/checkpoints/<file name of the URL>``. A file there (put
    by hand for an offline machine, or downloaded by torch.hub) is used for the URL."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path) or 'download')


def url_cache_path(url):
    """Where ``url`` is read from: :func:`hand_placed_path` when that file exists, else its own download,
    ``<stem>.<12 hex of the URL's sha256><ext>`` beside it. Named by the URL, two models' ``.../model.pth`` are
    two files, and processes downloading different URLs at once never write one path."""
    plain = hand_placed_path(url)
    if osp.isfile(plain):
        return plain
    stem, ext = osp.splitext(plain)
    return '%s.%s%s' % (stem, hashlib.sha256(url.encode('utf-8')).hexdigest()[:12], ext)


def _download(url, path):
    """``url`` into ``path`` through a temporary file renamed when complete (the same URL fetched by two ranks at
    once: either whole copy wins); a body shorter than its Content-Length (a connection closed early: urllib then
    just stops reading) is an error, not a cached file."""
    from .fileio import atomic_output
    request = urllib.request.Request(url, headers={'User-Agent': 'cvpack'})
    with urllib.request.urlopen(request) as response, atomic_output(path) as tmp:
        with open(tmp, 'wb') as f:
            shutil.copyfileobj(response, f, 1 << 20)
        announced, got = response.headers.get('Content-Length'), osp.getsize(tmp)
        if announced is not None and announced.strip().isdigit() and got != int(announced):
            raise OSError('the connection ended after %d of the %s bytes announced' % (got, announced.strip()))


def resolve_source(source):
    """A local path for ``source``: the path itself (checked to be a readable file) or a URL's cached download
    (:func:`url_cache_path`)."""
    source = str(source)
    if is_url(source):
        path = url_cache_path(source)
        if not osp.isfile(path):
            try:
                _download(source, path)
            except Exception as e:  # urllib's errors say nothing of what was being fetched
                raise CheckpointError(source, 'could not be downloaded (%s: %s); download it by hand and pass '
                                      'the local path' % (type(e).__name__, e)) from None
        return path
    if osp.isdir(source):
        raise CheckpointError(source, 'is a directory, not a weight file')
    if not osp.isfile(source):
        hint = ' (a dangling link: its target %s is gone)' % os.readlink(source) if osp.islink(source) else ''
        raise FileNotFoundError('weight file not found: %s%s' % (source, hint))
    if osp.getsize(source) == 0:
        raise CheckpointError(source, 'is empty (0 bytes): an interrupted save or download?')
    return source


def _unsafe_globals(path):
    """The globals a file would import, read without unpickling (torch's scan for zip files, opcodes otherwise)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        pass
    names, strings = [], []
    try:
        with open(path, 'rb') as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == 'GLOBAL':
                    names.append(arg.replace(' ', '.'))
                elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                    names.append('%s.%s' % tuple(strings[-2:]))
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:
        pass
    return [n for n in dict.fromkeys(names) if tuple(n.rsplit('.', 1)) not in _NUMPY_GLOBALS]


def _label(source, path):
    """How errors name a file: its path; a URL with the file it was downloaded to (delete that to fetch it again)."""
    return '%s (downloaded to %s)' % (source, path) if is_url(source) else path


def load_torch_file(source, map_location='cpu'):
    """``torch.load(weights_only=True)`` with numpy arrays and inert metadata admitted; errors name the file."""
    path = resolve_source(source)
    label = _label(source, path)
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if 'Weights only load failed' in str(e):
            names = _unsafe_globals(path)
            if not names:
                raise CheckpointError(label, 'not a PyTorch weight file (unrecognised content)') from None
            raise UnsafeFileError(label, 'refused: it holds Python objects other than tensors, numbers, strings '
                                  'and containers (%s); unpickling them could run code, so nothing was loaded'
                                  % ', '.join(names)) from None
        raise CheckpointError(label, 'not a PyTorch weight file (%s)' % e) from None
    except RuntimeError as e:
        if 'PytorchStreamReader' in str(e) or 'zip archive' in str(e):
            raise CheckpointError(label, 'truncated or corrupt (an incomplete zip archive: interrupted save or '
                                  'download?)') from None
        if _is_npz(path):   # torch's zip reader would only say 'file in archive is not in a subdirectory'
            raise CheckpointError(label, 'not a PyTorch weight file: a numpy .npz archive (np.savez); the weight '
                                  'readers take torch.save files and pickles of arrays') from None
        raise CheckpointError(label, 'could not be read: %s' % str(e).split('\n')[0]) from None
    except (EOFError, KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(label, 'not a PyTorch weight file, or truncated (%s: %s)'
                              % (type(e).__name__, e)) from None
    except OSError as e:  # torch's zip reader: "[Errno 22] Invalid argument" for a truncated archive
        if _is_zip_head(path):
            raise CheckpointError(label, 'truncated or corrupt (an incomplete zip archive: interrupted save or '
                                  'download?)') from None
        raise CheckpointError(label, 'could not be read (%s: %s)' % (type(e).__name__, e)) from None
    except Exception as e:  # torch's legacy reader on a cut or damaged file: IndexError, struct.error, ...
        raise CheckpointError(label, 'truncated or corrupt (%s: %s)' % (type(e).__name__, e)) from None


class ArrayUnpickler(pickle.Unpickler):
    """Admits numpy arrays/dtypes/scalars, dicts, lists, tuples, strings and numbers; refuses every other global."""

    _ALLOWED = {**_NUMPY_GLOBALS, ('collections', 'OrderedDict'): collections.OrderedDict}

    def find_class(self, module, name):
        obj = self._ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError('unsafe global %s.%s' % (module, name))
        return obj


def load_pickle_file(source):
    """Read a pickle of arrays (Detectron2's ``.pkl``) with :class:`ArrayUnpickler`; errors name the file."""
    path = resolve_source(source)
    label = _label(source, path)
    try:
        with open(path, 'rb') as f:
            return ArrayUnpickler(f, encoding='latin1').load()
    except pickle.UnpicklingError as e:
        if str(e).startswith('unsafe global'):
            raise UnsafeFileError(label, 'refused: the pickle wants %s, which is not a numpy array, dict, list, '
                                  'string or number; unpickling it could run code, so nothing was loaded'
                                  % str(e)[len('unsafe global '):]) from None
        raise CheckpointError(label, 'not a valid pickle (%s)' % e) from None
    except Exception as e:   # EOFError, ValueError, IndexError, AttributeError, ... of a cut or damaged pickle
        raise CheckpointError(label, 'truncated or corrupt pickle (%s: %s)' % (type(e).__name__, e)) from None


def load_file(source, map_location='cpu'):
    """Any weight file: zip-format torch files and non-``.pkl`` files via :func:`load_torch_file`, ``.pkl``/``.pickle``
    (and plain pickles that torch does not recognise) via :func:`load_pickle_file`."""
    path = resolve_source(source)
    if _is_zip(path) or not path.lower().endswith(('.pkl', '.pickle')):
        try:
            return load_torch_file(source, map_location)
        except UnsafeFileError:
            raise
        except CheckpointError:
            # a legacy (non-zip) torch file is a pickle too, of torch's magic number first: read as a plain
            # pickle, a cut one would "load" as that number and its own error would be lost
            if _is_zip(path) or not _looks_like_pickle(path) or _is_legacy_torch(path):
                raise
    return load_pickle_file(source)


def _is_zip(path):
    """zipfile.is_zipfile, but a damaged end record (it raises BadZipFile, e.g. 'zipfiles that span multiple
    disks') counts as a zip file: torch's reader then reports it as truncated or corrupt."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        return True


def _is_npz(path):
    """A readable zip archive of .npy members only: what np.savez writes."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names) and all(n.endswith('.npy') for n in names)


def _is_zip_head(path):
    try:
        with open(path, 'rb') as f:
            return f.read(4) == b'PK\x03\x04'
    except OSError:
        return False


# torch.save's legacy format starts with a pickle of this number (torch.serialization.MAGIC_NUMBER): a LONG1 opcode
# (0x8a), its length 10, then its 10 little-endian bytes
_LEGACY_TORCH_MAGIC = b'\x8a\x0a' + (0x1950a86a20f9469cfc6c).to_bytes(10, 'little')


def _is_legacy_torch(path):
    with open(path, 'rb') as f:
        return _LEGACY_TORCH_MAGIC in f.read(32)


def _looks_like_pickle(path):
    with open(path, 'rb') as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
