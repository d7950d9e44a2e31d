"""Decoded images kept on local disk (``DATASET.IMAGE_CACHE``): decode each file once, read it back memory-mapped.

Decoding the whole JPEG is most of a top-down training sample's CPU time (docs/SPEED.md, "Training samples"): a
COCO image of 640x480 takes 1.6-3.6 ms of CPU to decode on the two EPYCs measured there, the crop, the targets
and the normalisation 0.6-1.8 ms together. Every epoch decodes every person's image again. With a cache folder
set, the first read of an image decodes it with the same :func:`cvpack.data.io.read_image` and stores the pixels
as a ``.npy`` file; later reads memory-map that file: nothing is decoded, and an unflipped crop touches only the
rows it needs (a flipped one copies the whole image first, as without the cache). The pixels are
the decoded ones, bit for bit: samples are identical with and without the cache (tests/data/test_image_cache.py).
This is the idea of ultralytics' ``cache='disk'``; the cost is disk space, about 0.9 MB per 640x480 image
(about 50 GB for the COCO train2017 images with people): put it on a local SSD, not on a network share.

Safety and faults:

- An entry is named by a hash of the source's resolved path (symlinks followed), inode, size, modification and
  status-change times (``st_ctime_ns``, which ``touch``/``cp -p`` cannot set back), the colour order, the decode
  flags, the OpenCV version and this cache's format: an edited, replaced or re-linked image, or another
  decoder, gets a new entry (the old one is left behind, unused: delete the folder to reclaim it).
- Entries are memory-mapped with ``np.load(allow_pickle=False)``: no code runs when one is loaded.
- An entry is written to a temporary file, flushed to disk (``fsync``) and renamed into place, so DataLoader
  workers and ranks that decode the same image at once never read half an entry, nor a zero-filled one after
  a crash. Temporary files left by a killed writer are removed when the cache is opened, once a day old.
- A damaged entry (truncated, not a ``.npy``, not an (H, W, 3) uint8 array) is decoded again from the source and
  rewritten, with a warning naming both files. An entry that cannot be opened (permissions, too many open files)
  and a cache that cannot be written (disk full, read-only) each warn once per process and the images are read
  from their files: training goes on, only slower.
- A source that is missing or unreadable raises :class:`~cvpack.data.io.ImageReadError` as without the cache,
  even when an entry exists.
- Arrays from the cache are read-only, the first (decoded) read as well, so code that writes into an image fails
  at once rather than in the second epoch.
"""
import hashlib
import os
import os.path as osp
import time
import warnings

import cv2
import numpy as np

from ..fileio import atomic_output
from . import io
from .io import read_image

FORMAT = 1                    # bump when the stored layout or the key changes meaning
_STALE_TMP_S = 24 * 3600      # a temporary file this old was left by a killed writer

__all__ = ['DecodedImageCache', 'image_reader']


def image_reader(folder):
    """The image reader of a dataset: ``read(path, rgb=False, record=None)``, through a :class:`DecodedImageCache`
    in ``folder`` (``DATASET.IMAGE_CACHE``), or :func:`~cvpack.data.io.read_image` itself when ``folder`` is
    '' or None."""
    return DecodedImageCache(folder).read if folder else read_image


class DecodedImageCache:
    """A folder of decoded images; :meth:`read` is :func:`cvpack.data.io.read_image` with the cache in front.

    Args:
        root: the cache folder (made when missing); a relative path is taken from the current directory.
    """

    def __init__(self, root):
        if not root or not isinstance(root, str):
            raise ValueError('DATASET.IMAGE_CACHE: expected a folder path, got %r' % (root,))
        self.root = osp.abspath(root)
        if osp.exists(self.root) and not osp.isdir(self.root):
            raise ValueError('DATASET.IMAGE_CACHE %s exists and is not a folder' % self.root)
        self.writable = True   # False after a failed write: read from the sources from then on
        self.readable = True   # False after an entry could not be opened (not damaged): idem
        self._decoder = 'cv2 %s flags %d/%d' % (cv2.__version__, io._FLAGS, getattr(cv2, 'IMREAD_COLOR_RGB', -1))
        self._sweep()

    def _sweep(self):
        """Remove temporary files that killed writers left (older than a day: a live writer's is seconds old)."""
        if not osp.isdir(self.root):
            return
        now = time.time()
        for sub in os.scandir(self.root):
            if not sub.is_dir():
                continue
            for f in os.scandir(sub.path):
                try:
                    # atomic_output's temporaries: '.<entry stem>.tmp-<pid>.npy'
                    if (f.name.startswith('.') and '.tmp-' in f.name
                            and now - f.stat().st_mtime > _STALE_TMP_S):
                        os.unlink(f.path)
                except OSError:
                    pass

    def entry_path(self, path, rgb):
        """The entry of ``path`` decoded in colour order ``rgb``; raises OSError when the source cannot be stat'ed."""
        src = osp.realpath(path)
        st = os.stat(src)
        key = '\0'.join(str(v) for v in (FORMAT, src, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                          st.st_ctime_ns, 'rgb' if rgb else 'bgr', self._decoder))
        key = hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()
        return osp.join(self.root, key[:2], key + '.npy')

    def read(self, path, rgb=False, record=None):
        """The decoded (H, W, 3) uint8 image of ``path`` (BGR unless ``rgb``), read-only. Errors about the source
        are :func:`~cvpack.data.io.read_image`'s (they name the file and record)."""
        try:
            entry = self.entry_path(path, rgb)
        except OSError:
            entry = None
        if entry is None or not os.access(path, os.R_OK):
            return read_image(path, rgb=rgb, record=record)   # missing or unreadable: read_image says which
        if self.readable:
            img = self._load(entry, path)
            if img is not None:
                return img
        img = read_image(path, rgb=rgb, record=record)
        img.setflags(write=False)
        if self.writable and self.readable:     # an entry that could not be opened is not rewritten
            self._store(entry, img)
        return img

    def _load(self, entry, path):
        """The entry's image, memory-mapped; None when there is none yet or it is damaged (warned)."""
        try:
            img = np.load(entry, mmap_mode='r', allow_pickle=False)
        except FileNotFoundError:               # not cached yet (one stat less than checking first)
            return None
        except (ValueError, EOFError) as e:     # not a .npy, truncated, an object array
            img, why = None, '%s: %s' % (type(e).__name__, e)
        except OSError as e:                    # permissions, too many open files, no memory for the map
            self.readable = False
            warnings.warn('DATASET.IMAGE_CACHE: cannot open entry %s of %s (%s); reading images from their files '
                          'from now on (in this process)' % (entry, path, e), RuntimeWarning, stacklevel=3)
            return None
        else:
            ok = img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and min(img.shape[:2]) > 0
            why = 'holds a %s %s array, not (H, W, 3) uint8' % (img.dtype, tuple(img.shape))
            img = np.asarray(img) if ok else None
        if img is None:
            warnings.warn('DATASET.IMAGE_CACHE: damaged entry %s of %s (%s); decoding the image again and '
                          'rewriting the entry' % (entry, path, why), RuntimeWarning, stacklevel=3)
        return img

    def _store(self, entry, img):
        """Write the entry through the project's atomic writer (temporary file + rename; plain ``open``, so the
        umask's mode and other users may share the cache), fsynced before the rename so that a crash leaves no
        zero-filled entry."""
        try:
            with atomic_output(entry) as tmp, open(tmp, 'wb') as f:
                np.save(f, np.ascontiguousarray(img), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            self.writable = False
            warnings.warn('DATASET.IMAGE_CACHE: cannot write %s (%s); reading images from their files from now on '
                          '(in this process)' % (entry, e), RuntimeWarning, stacklevel=3)
