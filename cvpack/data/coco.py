"""COCO person-keypoint records for the top-down pipelines (``docs/reference/rsn_mspn.md`` §3.2).

A record is a dict::

    image_path str, image_id int (str when the file's ids are), ann_id int or str (-1 for a detection),
    center float32 (2,), scale float32 (2,) (box size / pixel_std), joints float32 (K, 3) (x, y, v) image pixels,
    score float, bbox float32 (4,) xywh,
    width / height int (image size from the annotation file, None when it has none)

``cs_mode`` picks the centre/scale convention: 'megvii' (centre x + w/2, y + h/2, scale (w, h) / 200, no
padding; the pipeline extends and aspect-fits later) or 'simple_baselines' (``_box2cs``: aspect fit, x1.25).
Plain ``json`` is used (no pycocotools prints), validated by :mod:`cvpack.data.validate` (errors name the file,
the annotation id and the field; degenerate boxes are skipped with one warning).
"""
import collections
import logging
import os.path as osp

import numpy as np

from .meta_file import check_meta_against_annotations
from .transforms import xywh_to_cs_megvii, xywh_to_cs_simple_baselines
from .validate import (box_is_degenerate, check_box, detection_category, identifier, number, read_json,
                       validate_coco_gt, warn_skipped)

__all__ = ['load_coco_gt', 'coco_gt_records', 'coco_det_records', 'box_to_cs', 'box_record', 'record_id']

logger = logging.getLogger(__name__)


def load_coco_gt(ann_file, meta):
    """Read and validate a COCO keypoint annotation file (:func:`cvpack.data.validate.validate_coco_gt`).

    Returns ``(images, anns)``: ``images`` maps image id -> image dict, ``anns`` is the annotation list.
    Raises ValueError naming ``ann_file``, the annotation id and the field on: missing sections, categories that
    do not match ``meta``, an annotation of an unknown image, keypoints that are not 3 * K finite numbers with
    visibility 0/1/2 (NaN, a string, a boolean, 16 keypoints against 17), a bbox that is not 4 finite numbers,
    a non-numeric area / num_keypoints / iscrowd; also a missing, truncated or non-JSON file. Boxes with w or
    h <= 0 pass here; the record builders skip them with one warning.
    """
    data = read_json(ann_file, 'COCO annotation')
    if isinstance(data, dict) and isinstance(data.get('categories'), list):
        check_meta_against_annotations(meta, data, ann_file)   # keypoint count, then the names
    images = validate_coco_gt(data, ann_file, meta.num_keypoints)
    return images, data['annotations']


def box_to_cs(box, cs_mode, aspect_ratio, pixel_std=200.0, padding=1.25):
    """Centre/scale of an xywh box in the convention ``cs_mode`` ('megvii' or 'simple_baselines')."""
    if cs_mode == 'megvii':
        return xywh_to_cs_megvii(box, pixel_std)
    if cs_mode == 'simple_baselines':
        return xywh_to_cs_simple_baselines(box, aspect_ratio, pixel_std, padding)
    raise ValueError('unknown centre/scale convention %r (megvii | simple_baselines)' % (cs_mode,))


def box_record(box, score, image_id, num_keypoints, image_path=None, cs_mode='megvii', aspect_ratio=0.75,
               pixel_std=200.0, padding=1.25, width=None, height=None, image=None):
    """The record of one person box (xywh image pixels) with detection ``score``: joints zeros (K, 3), ann_id -1.

    Used for detection files (:func:`coco_det_records`) and for boxes given at inference time
    (``cvpack.apis``), so both crop the same way. ``image``: the decoded image (H, W, 3) uint8 in the colour
    order of the dataset (``DATASET.COLOR_RGB``), used instead of reading ``image_path`` when given.
    """
    box = [float(v) for v in box]
    center, scale = box_to_cs(box, cs_mode, aspect_ratio, pixel_std, padding)
    rec = dict(image_path=image_path, image_id=image_id, ann_id=-1, center=center, scale=scale,
               joints=np.zeros((num_keypoints, 3), np.float32), score=float(score),
               bbox=np.asarray(box, np.float32), width=width, height=height)
    if image is not None:
        rec['image'] = image
    return rec


def _clean_box(box, img):
    """Simple Baselines' box sanitising: clip to the image; None if empty (its ``area > 0`` test is separate)."""
    x, y, w, h = box
    x1, y1 = max(0, x), max(0, y)
    x2 = min(img['width'] - 1, x1 + max(0, w - 1))
    y2 = min(img['height'] - 1, y1 + max(0, h - 1))
    if x2 >= x1 and y2 >= y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return None


def coco_gt_records(ann_file, image_dir, meta, cs_mode='megvii', aspect_ratio=0.75, pixel_std=200.0,
                    padding=1.25, load_min_num=1, check_images=True):
    """One record per usable person annotation.

    Kept: category 1, not crowd, ``num_keypoints > 0`` and at least ``load_min_num`` joints with v > 0
    (Megvii docs/reference/rsn_mspn.md §3.2; Simple Baselines keeps the same set), with an existing image file (missing
    images are skipped, counted and logged with the file names). 'simple_baselines' also applies its box clean-up
    (clip to the image, ``area > 0``) and uses the cleaned box.

    A file that gives no record at all is a ValueError naming it and counting what each filter dropped
    (``0 of 226 annotations kept as persons (dropped 125 by fewer labelled joints than
    DATASET.KEYPOINT.LOAD_MIN_NUM = 18, 97 by num_keypoints = 0, 4 by iscrowd = 1)``): an empty dataset failed
    later, in the sampler, with no word of why.

    Degenerate boxes (w or h <= 0, after the clean-up for 'simple_baselines') give no crop: those annotations
    are skipped, and one warning counts them and names up to three (file + annotation id). NaN/inf anywhere,
    in boxes too, is an error (:func:`load_coco_gt`): nothing reaches the transforms with a NaN centre.
    """
    images, anns = load_coco_gt(ann_file, meta)
    records, missing, exists, degenerate, dropped = [], set(), {}, [], collections.Counter()
    for ann in anns:
        reason = _filtered_out(ann)
        joints = None if reason else np.asarray(ann['keypoints'], np.float32).reshape(-1, 3)
        if joints is not None and np.sum(joints[:, 2] > 0) < load_min_num:
            reason = 'fewer labelled joints than DATASET.KEYPOINT.LOAD_MIN_NUM = %d' % load_min_num
        if reason:
            dropped[reason] += 1
            continue
        img = images[ann['image_id']]
        box = [float(v) for v in ann['bbox']]
        if cs_mode == 'simple_baselines':
            if 'width' not in img or 'height' not in img:
                raise ValueError('%s: image id %s has no width/height' % (ann_file, img['id']))
            box = _clean_box(box, img)
            if box is None or ann.get('area', 1) <= 0:
                degenerate.append('annotation id %s bbox %s' % (ann['id'], ann['bbox']))
                continue
        if box_is_degenerate(box):
            degenerate.append('annotation id %s bbox %s' % (ann['id'], ann['bbox']))
            continue
        path = osp.join(image_dir, _file_name(img, ann_file))
        if check_images:
            if img['id'] not in exists:          # one stat per image, not per person
                exists[img['id']] = osp.isfile(path)
            if not exists[img['id']]:
                missing.add(path)
                dropped['a missing image file (e.g. %s)'] += 1
                continue
        center, scale = box_to_cs(box, cs_mode, aspect_ratio, pixel_std, padding)
        records.append(dict(image_path=path, image_id=record_id(img['id']), ann_id=record_id(ann['id']), center=center,
                            scale=scale, joints=joints, score=1.0, bbox=np.asarray(box, np.float32),
                            width=img.get('width'), height=img.get('height')))
    if missing:
        logger.warning('%s: skipped the annotations of %d missing image files, e.g. %s',
                       ann_file, len(missing), sorted(missing)[:3])
    warn_skipped(logger, ann_file, 'person annotations', degenerate, len(degenerate), 'degenerate box: w or h <= 0')
    if not records:
        dropped['a degenerate box (w or h <= 0)'] = len(degenerate)
        raise ValueError(_emptied(ann_file, len(anns), dropped, min(missing) if missing else ''))
    return records


def _file_name(img, ann_file):
    """The ``file_name`` of image entry ``img`` of ``ann_file``; its absence (a bare KeyError) or a value that is no
    file name is a ValueError naming the file and the image id."""
    name = img.get('file_name')
    if not isinstance(name, str) or not name.strip():
        raise ValueError('%s: image id %s has %s, not an image file name' % (
            ann_file, img['id'], 'no "file_name"' if 'file_name' not in img else 'file_name %r' % (name,)))
    return name


def record_id(value):
    """A validated id (:func:`cvpack.data.validate.identifier`) as the record keeps it: an int, or the str itself
    (``int('img397133')`` raised naming nothing, and ``int('000123')`` would not match the GT's '000123')."""
    return value if isinstance(value, str) else int(value)


def _filtered_out(ann):
    """Why the annotation ``ann`` is no person to train on, by its fields (the first filter it fails), or None;
    the joint count against LOAD_MIN_NUM is checked by the caller, which needs the joints anyway."""
    if ann.get('category_id', 1) != 1:
        return 'category_id != 1'
    if ann.get('iscrowd', 0):
        return 'iscrowd = 1'
    if ann.get('num_keypoints', 0) <= 0:
        return 'num_keypoints = 0'
    return None


def _emptied(ann_file, total, dropped, missing_example):
    """The message of a file that gave no record: how many annotations each filter dropped, largest first, so
    the one that emptied the dataset (LOAD_MIN_NUM too high, the images in another folder ...) is named."""
    parts = ['%d by %s' % (n, why % missing_example if '%s' in why else why)
             for why, n in sorted(dropped.items(), key=lambda kv: -kv[1]) if n]
    return '%s: 0 of %d annotations kept as persons (%s)' % (
        ann_file, total, 'dropped ' + ', '.join(parts) if parts else 'the file has none')


def _check_det(det, det_file, i):
    """(bbox, score, category id) of detection #i: an int or str image_id, a bbox of 4 finite numbers, a finite
    numeric score, an int category_id (1 when absent) (ValueError). A boolean or float id is refused: ``True``
    would match image 1 and ``42.0`` image 42 silently."""
    where = '%s: detection #%d' % (det_file, i)
    if not isinstance(det, dict):
        raise ValueError('%s is a %s, not an object' % (where, type(det).__name__))
    for key in ('image_id', 'bbox', 'score'):
        if key not in det:
            raise ValueError('%s has no %r' % (where, key))
    identifier(det['image_id'], where, 'image_id')
    where += ' (image id %s)' % (det['image_id'],)
    return check_box(det['bbox'], where), number(det['score'], where, 'score'), detection_category(det, where)


def coco_det_records(det_file, ann_file, image_dir, meta, cs_mode='megvii', aspect_ratio=0.75,
                     pixel_std=200.0, padding=1.25, score_thresh=0.0, stats=None):
    """One record per person detection (category 1, ``score >= score_thresh``) of an image in the GT.

    Detections naming image ids absent from ``ann_file`` are skipped; their number is logged with the file
    name and stored in ``stats['unknown_image']`` when a dict is given (also ``stats['low_score']``,
    ``stats['other_category']``). Joints are zeros (K, 3); ``score`` is the detection score.

    A detection whose box is degenerate (w or h <= 0) is skipped, counted in ``stats['degenerate_box']`` and
    named (file + detection index, up to three) in one warning, as degenerate GT boxes are; a bbox or score that
    is not a finite number (NaN, inf, a string, a boolean) is an error naming the file and the detection.
    """
    images, _ = load_coco_gt(ann_file, meta)
    dets = read_json(det_file, 'detection')
    if not isinstance(dets, list):
        raise ValueError('%s: expected a list of detections {image_id, category_id, bbox, score}' % det_file)
    counts = dict(unknown_image=0, low_score=0, other_category=0, degenerate_box=0)
    unknown_ids, degenerate, other_ids = set(), [], set()
    records = []
    for i, det in enumerate(dets):
        bbox, score, category = _check_det(det, det_file, i)
        if category != 1:
            counts['other_category'] += 1
            other_ids.add(category)
            continue
        img = images.get(det['image_id'])
        if img is None:
            counts['unknown_image'] += 1
            unknown_ids.add(det['image_id'])
            continue
        if score < score_thresh:
            counts['low_score'] += 1
            continue
        if box_is_degenerate(bbox):
            counts['degenerate_box'] += 1
            degenerate.append('detection #%d bbox %s' % (i, det['bbox']))
            continue
        records.append(box_record(bbox, score, record_id(img['id']), meta.num_keypoints,
                                  osp.join(image_dir, _file_name(img, ann_file)), cs_mode, aspect_ratio, pixel_std,
                                  padding, width=img.get('width'), height=img.get('height')))
    if counts['unknown_image']:
        logger.warning('%s: skipped %d detections whose image ids are not in %s (e.g. %s)', det_file,
                       counts['unknown_image'], ann_file, sorted(unknown_ids)[:5])
    warn_skipped(logger, det_file, 'detections', degenerate, len(degenerate), 'degenerate box: w or h <= 0')
    if stats is not None:
        stats.update(counts)
    if not dets:   # as pycocotools' empty results: no error, but said (every metric will be 0)
        logger.warning('%s: the detection file is empty: no person to test, every metric will be 0', det_file)
    elif not records:
        # every box dropped (a person category other than 1, another dataset's image ids, a threshold above every
        # score) gave an empty val set and AP 0 with exit 0; say which filter emptied it, as coco_gt_records does
        why = [(counts['other_category'], 'by category_id other than 1 (person), found %s' % sorted(other_ids)[:5]),
               (counts['unknown_image'], 'by image ids not in %s' % ann_file),
               (counts['low_score'], 'by a score below %g (TEST.DET_SCORE_THRESH)' % score_thresh),
               (counts['degenerate_box'], 'by a degenerate box (w or h <= 0)')]
        raise ValueError('%s: 0 of %d detections kept as person boxes (dropped %s)' % (
            det_file, len(dets), ', '.join('%d %s' % (n, text) for n, text in sorted(why, key=lambda w: -w[0]) if n)))
    return records

