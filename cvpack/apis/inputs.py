"""Inputs of :class:`cvpack.apis.PoseEstimator`: images (paths or arrays) and person boxes (caller, COCO json).

Images become uint8 (H, W, 3) arrays in the colour order the exp was trained with (``DATASET.COLOR_RGB``),
read by :func:`cvpack.data.io.read_image` (errors name the file). A detection-results json is the COCO
format ``[{image_id | file_name, bbox: [x, y, w, h], score, category_id}]``; entries are matched to an image
by its file name (basename) or by its image id (the caller's, or the file name's stem when it is a number,
as COCO's ``000000397133.jpg`` -> 397133).
"""
import logging
import os.path as osp

import cv2
import numpy as np

from ..data.io import read_image
from ..data.validate import (box_is_degenerate, check_box, detection_category, identifier, number, numbers, read_json,
                             warn_skipped)

__all__ = ['ImageInput', 'load_images', 'DetectionFile', 'image_id_from_name', 'parse_boxes', 'check_color',
           'check_image_id', 'warn_outside']

logger = logging.getLogger(__name__)


class ImageInput:
    """One image: ``array`` (H, W, 3) uint8 in the exp's colour order, ``name`` (path or '<array #i>'),
    ``image_id`` (int, str or None)."""

    def __init__(self, array, name, image_id=None):
        self.array, self.name, self.image_id = array, name, image_id


def image_id_from_name(name):
    """The integer stem of a file name ('000000397133.jpg' -> 397133), else None."""
    stem = osp.splitext(osp.basename(str(name)))[0]
    return int(stem) if stem.isdigit() else None


def check_color(color):
    """'bgr' or 'rgb' (ValueError otherwise), checked for every input kind: a typo must not pass silently
    because the input happened to be a path."""
    if not isinstance(color, str) or color not in ('bgr', 'rgb'):
        raise ValueError("color must be 'bgr' (OpenCV) or 'rgb' (PIL, matplotlib), got %r" % (color,))
    return color


def check_image_id(value, where):
    """An image id as COCO results carry it: an int (numpy ints become int) or a str; a boolean, float, None
    or list is refused (True would equal id 1, 42.0 would be written as a float id)."""
    value = identifier(value, where, 'image id')
    return int(value) if isinstance(value, np.integer) else value


def _array_image(image, color, rgb, name):
    if image is None:
        raise ValueError('%s is None, not an image (cv2.imread returns None for a file it cannot read)' % name)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('%s: expected an (H, W, 3) uint8 image, got %s %s' % (name, image.dtype, image.shape))
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError('%s is empty: %d x %d pixels' % (name, image.shape[1], image.shape[0]))
    if (color == 'rgb') != bool(rgb):   # convert to the exp's order
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)   # the same swap both ways
    return np.ascontiguousarray(image)


def _image_ids(image_ids, single, count):
    """The caller's ids, one per image, checked (:func:`check_image_id`); None when not given."""
    if image_ids is None:
        return None
    if single and not isinstance(image_ids, (list, tuple, np.ndarray)):
        image_ids = [image_ids]
    if not isinstance(image_ids, (list, tuple, np.ndarray)):
        raise ValueError('image_ids must be a list (one id per image), got %r' % (image_ids,))
    if len(image_ids) != count:
        raise ValueError('%d image_ids for %d images' % (len(image_ids), count))
    return [check_image_id(v, 'image_ids[%d]' % i) for i, v in enumerate(image_ids)]


def load_images(inputs, color, rgb, image_ids=None):
    """``inputs``: a path, an ndarray, an :class:`ImageInput` (an array with its file name, for det-json
    matching) or a list of them -> (list of :class:`ImageInput`, was_single).

    Args:
        color: 'bgr' or 'rgb', the channel order of ndarray inputs (files are decoded by OpenCV).
        rgb: the exp's DATASET.COLOR_RGB (the order the returned arrays have).
        image_ids: optional ids, one per image (default: the file name's numeric stem, else None).
    """
    check_color(color)
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    image_ids = _image_ids(image_ids, single, len(items))
    out = []
    for i, item in enumerate(items):
        own_id = None
        if isinstance(item, (str, bytes)) or hasattr(item, '__fspath__'):
            path = str(item if not isinstance(item, bytes) else item.decode())
            array, name = read_image(path, rgb=rgb), path
        elif isinstance(item, ImageInput):   # read by the caller (its array in ``color`` order), name kept
            name, own_id = item.name, item.image_id
            array = _array_image(item.array, color, rgb, name)
        else:
            name = '<array #%d>' % i
            array = _array_image(item, color, rgb, name)
        image_id = image_ids[i] if image_ids is not None else own_id if own_id is not None \
            else image_id_from_name(name)
        out.append(ImageInput(array, name, image_id))
    return out, single


def _box_row(row, name, index):
    """One caller box as ([x, y, w, h], score): 4 or 5 finite numbers (strings, booleans, NaN refused)."""
    field = 'box #%d' % index
    if hasattr(row, 'tolist'):   # a numpy or torch row (a detector's output): its Python numbers
        row = row.tolist()
    if np.isscalar(row) or not hasattr(row, '__len__') or len(row) not in (4, 5):
        raise ValueError('%s: %s is %r; boxes are [x, y, w, h] or [x, y, w, h, score]' % (name, field, row))
    values = numbers(list(row), name, field)
    if values[2] < 0 or values[3] < 0:
        raise ValueError('%s: %s is %s: negative width or height' % (name, field, values))
    return [float(v) for v in values[:4]], float(values[4]) if len(values) == 5 else 1.0


def parse_boxes(boxes, name, image_hw=None):
    """Caller boxes [[x, y, w, h(, score)], ...] (image pixels) -> (xywh (B, 4) float64, scores (B,)).

    Errors name ``name`` and the box index (wrong length, a string, NaN/inf, a negative width or height); a box
    of zero width or height gives no crop: it is skipped, with one warning per image naming them.
    ``image_hw``: (H, W) of the image, to warn about boxes that lie entirely outside it.
    """
    if hasattr(boxes, 'tolist'):   # an ndarray or a torch tensor (any device), (B, 4|5) or one box (4|5,)
        boxes = boxes.tolist()
    rows = [] if boxes is None else list(boxes)
    if rows and np.isscalar(rows[0]):   # one box
        rows = [rows]
    kept, skipped = [], []
    for i, row in enumerate(rows):
        box, score = _box_row(row, name, i)
        if box_is_degenerate(box):
            skipped.append('box #%d %s' % (i, box))
            continue
        kept.append((i, box, score))
    warn_skipped(logger, name, 'boxes', skipped, len(skipped), 'zero width or height')
    if image_hw is not None:
        warn_outside(name, image_hw, [(i, b) for i, b, _ in kept], 'box')
    xywh = np.array([b for _, b, _ in kept], np.float64).reshape(-1, 4)
    return xywh, np.array([s for _, _, s in kept], np.float64)


def warn_outside(name, image_hw, boxes, what):
    """One warning naming the (index, xywh) ``boxes`` that do not overlap the (H, W) image: their crops hold
    only padding (kept, as test.py keeps such detections)."""
    h, w = image_hw
    out = ['%s #%d %s' % (what, i, list(b)) for i, b in boxes
           if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0]
    if out:
        logger.warning('%s (%d x %d): %d %s(es) entirely outside the image, e.g. %s', name, w, h, len(out), what,
                       '; '.join(out[:3]))


class DetectionFile:
    """A COCO detection-results json indexed by file name and by image id (person category only).

    Entries are checked as test.py checks a detection file (:func:`cvpack.data.coco.coco_det_records`): a bbox
    that is not 4 finite numbers or a score that is not a finite number is an error naming the file and the
    detection index; entries of another ``category_id`` are ignored. The score threshold and the skipping of
    degenerate boxes are applied per image by the estimator, as test.py applies them.
    """

    def __init__(self, path):
        self.path = str(path)
        dets = read_json(self.path, 'detection')   # names the path: missing, a directory, not JSON
        if not isinstance(dets, list):
            raise ValueError('%s: expected a list of detections {image_id or file_name, bbox, score}' % self.path)
        self.by_name, self.by_id = {}, {}
        for i, det in enumerate(dets):
            self._add(i, det)
        self.id_types = {type(k) for k in self.by_id}

    def _add(self, i, det):
        where = '%s: detection #%d' % (self.path, i)
        if not isinstance(det, dict) or 'bbox' not in det or 'score' not in det or \
                ('image_id' not in det and 'file_name' not in det):
            raise ValueError('%s needs bbox, score and image_id or file_name, got %r' % (where, det))
        entry = (i, check_box(det['bbox'], where), number(det['score'], where, 'score'))
        image_id = det.get('image_id')   # null next to a file_name: matched by name only
        if image_id is not None or 'file_name' not in det:
            image_id = check_image_id(image_id, where)
        if detection_category(det, where) != 1:
            return
        if 'file_name' in det:
            self.by_name.setdefault(osp.basename(str(det['file_name'])), []).append(entry)
        if image_id is not None:
            self.by_id.setdefault(image_id, []).append(entry)

    def boxes_for(self, image):
        """[(detection index, [x, y, w, h], score), ...] of :class:`ImageInput` ``image`` (by file name, then
        id); None when the file has no entry for it. An image id of another type than the file's ids (the str
        '397133' against int ids) is an error: it could never match."""
        found = self.by_name.get(osp.basename(image.name))
        if found is None and image.image_id is not None:
            found = self.by_id.get(image.image_id)
            if found is None and self.id_types and type(image.image_id) not in self.id_types:
                raise ValueError('%s: image id %r of %s (type %s) can match none of the image ids in this file '
                                 '(type %s); pass image_ids= of that type' % (
                                     self.path, image.image_id, image.name, type(image.image_id).__name__,
                                     ' and '.join(sorted(t.__name__ for t in self.id_types))))
        return found
