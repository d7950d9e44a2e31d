"""Image reading with errors that name the file.

``cv2.imread`` returns ``None`` for a missing, unreadable or corrupt file and says nothing about which;
the original loaders then failed later with an unrelated ``NoneType`` error. Here every failure raises
:class:`ImageReadError` naming the file and, when given, the record (``docs/reference/rsn_mspn.md`` §3.4 step 1).
"""
import cv2
import numpy as np

__all__ = ['ImageReadError', 'read_image']

# IGNORE_ORIENTATION: the COCO/MPII annotations are in stored-pixel coordinates, so an EXIF rotation must
# not be applied (Simple Baselines/HRNet read with this flag). Megvii's plain imread would rotate the few COCO
# files carrying an orientation tag and misalign their joints: a deliberate fix, identical for all other files.
_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_HAS_RGB = hasattr(cv2, 'IMREAD_COLOR_RGB')   # OpenCV >= 4.10


class ImageReadError(IOError):
    """An image file is missing, unreadable or cannot be decoded."""


def read_image(path, rgb=False, record=None):
    """Read an image as uint8 (H, W, 3), BGR unless ``rgb``.

    Args:
        path: image file.
        rgb: convert BGR -> RGB (Simple Baselines' ``COLOR_RGB``).
        record: optional text naming the record that asked for the image (put in the error message).

    Raises:
        ImageReadError: the file is missing, not readable, or not a decodable image.
    """
    where = '' if record is None else ' (record %s)' % record
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError('image file not found: %s%s' % (path, where)) from None
    except (PermissionError, IsADirectoryError, OSError) as e:
        raise ImageReadError('cannot read image file %s%s: %s' % (path, where, e)) from None
    # IMREAD_COLOR_RGB: libjpeg-turbo writes RGB directly, the same bytes as BGR + cvtColor, one pass less
    flags = (cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION) if rgb and _HAS_RGB else _FLAGS
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise ImageReadError('cannot decode image file %s%s: empty, corrupt or not an image (%d bytes)'
                             % (path, where, buf.size))
    if rgb and not _HAS_RGB:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img

