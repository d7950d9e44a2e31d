"""Inputs of :class:`cvpack.apis.PoseEstimator`: images (paths or arrays) and person boxes (caller, COCO json).

Images become uint8 (H, W, 3) arrays in the colour order the exp was trained with (``DATASET.COLOR_RGB``),
read by :func:`cvpack.data.io.read_image` (errors name the file). A detection-results json is the COCO
format ``[{image_id | file_name, bbox: [x, y, w, h], score, category_id}]``; entries are matched to an image
by its file name (basename) or by its image id (the caller's, or the file name's stem when it is a number,
as COCO's ``000000397133.jpg`` -> 397133).
"""
import json
import os.path as osp

import cv2
import numpy as np

from ..data.io import read_image

__all__ = ['ImageInput', 'load_images', 'DetectionFile', 'image_id_from_name', 'parse_boxes']


class ImageInput:
    """One image: ``array`` (H, W, 3) uint8 in the exp's colour order, ``name`` (path or '<array #i>'),
    ``image_id`` (int or None)."""

    def __init__(self, array, name, image_id=None):
        self.array, self.name, self.image_id = array, name, image_id


def image_id_from_name(name):
    """The integer stem of a file name ('000000397133.jpg' -> 397133), else None."""
    stem = osp.splitext(osp.basename(str(name)))[0]
    return int(stem) if stem.isdigit() else None


def _array_image(image, color, rgb, name):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('%s: expected an (H, W, 3) uint8 image, got %s %s' % (name, image.dtype, image.shape))
    if color not in ('bgr', 'rgb'):
        raise ValueError("color must be 'bgr' (OpenCV) or 'rgb' (PIL, matplotlib), got %r" % (color,))
    if (color == 'rgb') != bool(rgb):   # convert to the exp's order
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)   # the same swap both ways
    return np.ascontiguousarray(image)


def load_images(inputs, color, rgb, image_ids=None):
    """``inputs``: a path, an ndarray, an :class:`ImageInput` (an array with its file name, for det-json
    matching) or a list of them -> (list of :class:`ImageInput`, was_single).

    Args:
        color: 'bgr' or 'rgb', the channel order of ndarray inputs (files are decoded by OpenCV).
        rgb: the exp's DATASET.COLOR_RGB (the order the returned arrays have).
        image_ids: optional ids, one per image (default: the file name's numeric stem, else None).
    """
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    if image_ids is not None:
        image_ids = [image_ids] if single and np.isscalar(image_ids) else list(image_ids)
        if len(image_ids) != len(items):
            raise ValueError('%d image_ids for %d images' % (len(image_ids), len(items)))
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


def parse_boxes(boxes, name):
    """Caller boxes [[x, y, w, h(, score)], ...] (image pixels) -> (xywh (B, 4) float64, scores (B,))."""
    rows = [] if boxes is None else list(boxes)
    if rows and np.isscalar(rows[0]):   # one box
        rows = [rows]
    xywh, scores = np.zeros((len(rows), 4)), np.ones(len(rows))
    for i, row in enumerate(rows):
        row = np.asarray(row, dtype=np.float64).reshape(-1)
        if row.size not in (4, 5) or not np.all(np.isfinite(row)) or np.any(row[2:4] <= 0):
            raise ValueError('%s: box #%d is %s; boxes are [x, y, w, h] or [x, y, w, h, score] with finite '
                             'values and positive width and height' % (name, i, row.tolist()))
        xywh[i] = row[:4]
        scores[i] = row[4] if row.size == 5 else 1.0
    return xywh, scores


class DetectionFile:
    """A COCO detection-results json indexed by file name and by image id (person category only)."""

    def __init__(self, path):
        self.path = str(path)
        if not osp.isfile(self.path):
            raise FileNotFoundError('detection file not found: %s' % self.path)
        try:
            with open(self.path) as f:
                dets = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError('detection file %s is not valid JSON: %s' % (self.path, e)) from None
        if not isinstance(dets, list):
            raise ValueError('%s: expected a list of detections {image_id or file_name, bbox, score}' % self.path)
        self.by_name, self.by_id = {}, {}
        for i, det in enumerate(dets):
            if not isinstance(det, dict) or 'bbox' not in det or 'score' not in det or \
                    ('image_id' not in det and 'file_name' not in det):
                raise ValueError('%s: detection #%d needs bbox, score and image_id or file_name, got %r'
                                 % (self.path, i, det))
            if len(det['bbox']) != 4:
                raise ValueError('%s: detection #%d has bbox %r, expected [x, y, w, h]' % (self.path, i, det['bbox']))
            if det.get('category_id', 1) != 1:
                continue
            entry = [float(v) for v in det['bbox']] + [float(det['score'])]
            if 'file_name' in det:
                self.by_name.setdefault(osp.basename(str(det['file_name'])), []).append(entry)
            if 'image_id' in det:
                self.by_id.setdefault(det['image_id'], []).append(entry)

    def boxes_for(self, image):
        """[[x, y, w, h, score], ...] of :class:`ImageInput` ``image`` (by file name, then id); None when the
        file has no entry for it."""
        found = self.by_name.get(osp.basename(image.name))
        if found is None and image.image_id is not None:
            found = self.by_id.get(image.image_id)
        return found
