"""Decoded images kept on local disk (``DATASET.IMAGE_CACHE``): decode each file once, read it back memory-mapped.

Decoding the whole JPEG is most of a top-down training sample's CPU time (docs/SPEED.md, "Training samples"): a
COCO image of 640x480 takes about 1.5 ms to decode, the crop, the targets and the normalisation about 0.6 ms
together. Every epoch decodes every person's image again. With a cache folder set, the first read of an image
decodes it with the same :func:`cvpack.data.io.read_image` and stores the pixels as a ``.npy`` file; later reads
memory-map that file, so the warp touches only the rows the crop needs and nothing is decoded. The pixels are
the decoded ones, bit for bit: samples are identical with and without the cache (tests/data/test_image_cache.py).
This is the idea of ultralytics' ``cache='disk'``; the cost is disk space, about 0.9 MB per 640x480 image
(about 50 GB for the COCO train2017 images with people): put it on a local SSD, not on a network share.

Safety and faults:

- An entry is named by a hash of the source's absolute path, size, modification time and the colour order, so
  a changed source file gets a new entry (the old one is left behind, unused: delete the folder to reclaim it).
- Entries are read with ``np.load(allow_pickle=False)``: no code runs when one is loaded.
- An entry is written to a temporary file and renamed into place, so DataLoader workers and ranks that decode
  the same image at once never read half an entry.
- A damaged entry (truncated, not a ``.npy``, not an (H, W, 3) uint8 array) is decoded again from the source and
  rewritten, with one warning naming both files; a cache that cannot be written (disk full, read-only) warns
  once and the images are read from their sources: training goes on, only slower.
"""
import hashlib
import os
import os.path as osp
import tempfile
import warnings

import numpy as np

from .io import read_image

__all__ = ['DecodedImageCache']


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

    def entry_path(self, path, rgb):
        """The entry of ``path`` decoded in colour order ``rgb``; raises OSError when the source cannot be stat'ed."""
        src = osp.abspath(path)
        st = os.stat(src)
        key = hashlib.sha1(('%s\0%d\0%d\0%s' % (src, st.st_size, st.st_mtime_ns, 'rgb' if rgb else 'bgr'))
                           .encode('utf-8', 'surrogateescape')).hexdigest()
        return osp.join(self.root, key[:2], key + '.npy')

    def read(self, path, rgb=False, record=None):
        """The decoded (H, W, 3) uint8 image of ``path`` (BGR unless ``rgb``), read-only when it comes from the
        cache. Errors about the source are :func:`~cvpack.data.io.read_image`'s (they name the file and record)."""
        try:
            entry = self.entry_path(path, rgb)
        except OSError:
            return read_image(path, rgb=rgb, record=record)   # missing or unreadable: read_image says which
        if osp.exists(entry):
            img = self._load(entry, path)
            if img is not None:
                return img
        img = read_image(path, rgb=rgb, record=record)
        if self.writable:
            self._store(entry, img)
        return img

    def _load(self, entry, path):
        try:
            img = np.load(entry, mmap_mode='r', allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            img, why = None, '%s: %s' % (type(e).__name__, e)
        else:
            ok = img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and min(img.shape[:2]) > 0
            why = 'holds a %s %s array, not (H, W, 3) uint8' % (img.dtype, tuple(img.shape))
            img = np.asarray(img) if ok else None
        if img is None:
            warnings.warn('DATASET.IMAGE_CACHE: damaged entry %s of %s (%s); decoding the image again and '
                          'rewriting the entry' % (entry, path, why), RuntimeWarning, stacklevel=3)
        return img

    def _store(self, entry, img):
        folder = osp.dirname(entry)
        tmp = None
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.npy', dir=folder)
            with os.fdopen(fd, 'wb') as f:
                np.save(f, np.ascontiguousarray(img), allow_pickle=False)
            os.replace(tmp, entry)
        except OSError as e:
            self.writable = False
            warnings.warn('DATASET.IMAGE_CACHE: cannot write %s (%s); reading images from their files from now on'
                          % (entry, e), RuntimeWarning, stacklevel=3)
            if tmp is not None and osp.exists(tmp):
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
