"""Checks shared by the dataset loaders and the evaluator: every annotation or result file is read and its
numeric fields validated here, so a bad value fails with the file, the record and the field named.

Rules (docs/RELIABILITY.md):
  * a file that is missing, a folder, not JSON or truncated: ``FileNotFoundError`` / ``ValueError`` naming it;
  * a numeric field holding a string (``"1"``), a boolean, ``null`` or a nested list, or NaN/inf, or a list of
    the wrong length (16 keypoints against 17): ``ValueError`` naming file, record and field. NaN must never
    reach pycocotools: its OKS with a NaN is NaN, and ``NaN < threshold`` is False, so a NaN ground truth
    *matches* a detection and raises AP;
  * an id (image, annotation, category) that is a boolean, null, a float or a list: ValueError (``True`` would
    silently equal id 1);
  * a *degenerate box* (finite, but w or h <= 0; for MPII a scale <= 0) gives no crop to train or test on:
    the loaders skip it and log one warning per file that counts them and names a few (file + id). Boxes with
    NaN/inf are not degenerate but corrupt, and fail like any other non-finite number. The evaluator never
    skips ground truth (the metric would no longer be pycocotools'): it scores such boxes as pycocotools does.
"""
import json
import math
import os.path as osp

import numpy as np

__all__ = ['read_json', 'config_file', 'number', 'numbers', 'identifier', 'check_box', 'box_is_degenerate',
           'validate_coco_gt', 'validate_keypoint_results', 'flatten_pairs', 'mpii_joints', 'warn_skipped',
           'detection_category']

_NUMBER_TYPES = (int, float, np.integer, np.floating)


def read_json(path, what):
    """``json.load`` of ``path``; errors name the file and say what is wrong (missing, a folder, bad JSON)."""
    path = str(path)
    if osp.isdir(path):
        raise ValueError('%s file %s is a directory, not a file' % (what, path))
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read().decode('utf-8'))
    except FileNotFoundError:
        raise FileNotFoundError('%s file not found: %s' % (what, path)) from None
    except json.JSONDecodeError as e:
        hint = ' (truncated?)' if e.pos >= len(e.doc.rstrip()) else ''
        raise ValueError('%s file %s is not valid JSON%s: %s' % (what, path, hint, e)) from None
    except UnicodeDecodeError as e:
        raise ValueError('%s file %s is not UTF-8 text (JSON): %s' % (what, path, e)) from None


def config_file(root, value, key):
    """``root/value``, the file the config key ``key`` names (DATASET.VAL_ANN, TEST.DET_FILE ...), checked to exist.

    Raises FileNotFoundError '<key> (<path>): file not found', or ValueError for a folder or an empty value: the
    message names the setting to fix as well as the file (the readers name only the file)."""
    if not value:
        raise ValueError('%s is empty: set it to a file below DATASET.ROOT (%s)' % (key, root))
    path = osp.join(root, value)
    if osp.isdir(path):
        raise ValueError('%s (%s): a directory, not a file' % (key, path))
    if not osp.isfile(path):
        raise FileNotFoundError('%s (%s): file not found' % (key, path))
    return path


def _is_number(v):
    return isinstance(v, _NUMBER_TYPES) and not isinstance(v, (bool, np.bool_))


def number(value, where, field, finite=True, minimum=None):
    """``value`` as a float; ValueError '<where>: <field> ...' for a non-number (str, bool, None), NaN/inf, or
    a value below ``minimum``."""
    if not _is_number(value):
        raise ValueError('%s: %s is %r (%s), not a number' % (where, field, value, type(value).__name__))
    try:
        value = float(value)
    except OverflowError:   # a JSON integer beyond the float range (10**400): a traceback naming no file before
        raise ValueError('%s: %s is an integer past the float range (1.8e308), not a finite number'
                         % (where, field)) from None
    if finite and not math.isfinite(value):
        raise ValueError('%s: %s is %r, not a finite number' % (where, field, value))
    if minimum is not None and value < minimum:
        raise ValueError('%s: %s is %r, below %g' % (where, field, value, minimum))
    return value


def _finite(v):
    try:
        return math.isfinite(v)
    except OverflowError:   # an int beyond the float range
        return False


def numbers(values, where, field, length=None, note=''):
    """A flat list of finite numbers, returned as a list; ValueError naming ``where`` and ``field`` for a
    non-list, a wrong ``length``, and the first element that is not a finite number (with its index).
    Plain Python checks (no numpy array per record): a COCO-train-sized file (262k annotations) takes ~2-3 s."""
    if isinstance(values, np.ndarray):
        values = values.ravel().tolist()
    if not isinstance(values, (list, tuple)):
        raise ValueError('%s: %s is %r (%s), not a list of numbers' % (where, field, values, type(values).__name__))
    if length is not None and len(values) != length:
        raise ValueError('%s: %s has %d values, expected %d%s' % (where, field, len(values), length, note))
    if not set(map(type, values)) <= {int, float}:      # fast path for JSON; numpy scalars take the slow one
        for i, v in enumerate(values):
            if not _is_number(v):
                raise ValueError('%s: %s[%d] is %r (%s), not a number' % (where, field, i, v, type(v).__name__))
    try:
        total_finite = math.isfinite(sum(values))   # NaN/inf propagate through the sum: one C loop
    except OverflowError:
        total_finite = False
    if not total_finite:                            # find which (or none: finite values summing past 1e308)
        bad = [i for i, v in enumerate(values) if not _finite(v)]
        if bad:
            raise ValueError('%s: %s[%d] is %s, not a finite number (NaN/inf)' % (where, field, bad[0], values[bad[0]]))
    return values


def check_box(bbox, where, field='bbox'):
    """An [x, y, w, h] box of 4 finite numbers, as a list of floats (ValueError otherwise)."""
    return [float(v) for v in numbers(bbox, where, field, length=4)]


def box_is_degenerate(box):
    """True for a box (x, y, w, h) with w <= 0 or h <= 0: no crop can be cut from it."""
    return not (box[2] > 0 and box[3] > 0)


def warn_skipped(logger, path, what, examples, count, why):
    """One warning per file: ``path: skipped COUNT WHAT (WHY), e.g. EX1; EX2; EX3``."""
    if count:
        logger.warning('%s: skipped %d %s (%s), e.g. %s', path, count, what, why, '; '.join(examples[:3]))


def identifier(value, where, field):
    """An id (int or str, as COCO and its conversions use); a boolean would silently equal id 1 or 0."""
    if isinstance(value, bool) or not isinstance(value, (int, str, np.integer)):
        raise ValueError('%s: %s is %r (%s), not an int or str id' % (where, field, value, type(value).__name__))
    return value


def detection_category(det, where):
    """The ``category_id`` of a detection-results entry as an int (absent: 1, person). ValueError naming ``where``
    for any other type: a str '1' never equals 1, so a file written with str ids lost every box as "another
    category" (test.py: AP 0, exit 0), and a boolean True was taken for person."""
    value = det.get('category_id', 1)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError('%s: category_id is %r (%s), not an int category id (person is 1)'
                         % (where, value, type(value).__name__))
    return int(value)


def _section(data, key, path):
    if key not in data:
        raise ValueError('%s: no %r section (not a COCO keypoint file?)' % (path, key))
    if not isinstance(data[key], list):
        raise ValueError('%s: %r is a %s, not a list' % (path, key, type(data[key]).__name__))
    return data[key]


def _check_keypoints(kps, where, num_kp):
    """3 * num_kp finite numbers, visibility 0, 1 or 2."""
    kps = numbers(kps, where, 'keypoints', length=3 * num_kp, note=' (%d keypoints x 3)' % num_kp)
    vis = kps[2::3]
    if not set(vis) <= {0, 1, 2}:
        j = next(j for j, v in enumerate(vis) if v not in (0, 1, 2))
        raise ValueError('%s: keypoints[%d] (visibility of keypoint %d) is %g, expected 0, 1 or 2'
                         % (where, 3 * j + 2, j, vis[j]))
    return kps


def validate_coco_gt(data, path, num_keypoints, required=()):
    """Validate a COCO keypoint annotation dict (``json.load`` of ``path``) in place; returns {image id: image}.

    Checked: 'images', 'annotations', 'categories' are lists; every image has an id (and numeric width/height
    when present); every person annotation (category 1) has an id, an image_id of 'images', ``keypoints`` of
    ``3 * num_keypoints`` finite numbers with visibility 0/1/2, a ``bbox`` of 4 finite numbers, and numeric
    ``area`` >= 0, ``num_keypoints`` >= 0 and ``iscrowd`` 0/1 when present (``required`` names fields that must
    be present, e.g. pycocotools needs 'area' and 'num_keypoints'); image ids and annotation ids are unique.
    Errors: ValueError naming ``path``, the annotation id and the field.
    """
    if not isinstance(data, dict):
        raise ValueError('%s: a COCO annotation file is a JSON object, got a %s' % (path, type(data).__name__))
    images, anns = _section(data, 'images', path), _section(data, 'annotations', path)
    _section(data, 'categories', path)
    index, positions = {}, {}
    for n, img in enumerate(images):
        if not isinstance(img, dict) or 'id' not in img:
            raise ValueError('%s: images[%d] has no "id"' % (path, n))
        identifier(img['id'], '%s: images[%d]' % (path, n), 'id')
        # one id, two images: the annotations of either would be cut from the last one's file
        if positions.setdefault(img['id'], n) != n:
            raise ValueError('%s: images[%d]: image id %r is given twice (images[%d] and images[%d])'
                             % (path, n, img['id'], positions[img['id']], n))
        for key in ('width', 'height'):
            if key in img:
                number(img[key], '%s: image id %s' % (path, img['id']), key, minimum=1)
        index[img['id']] = img
    ann_index = {}
    for n, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise ValueError('%s: annotations[%d] is a %s, not an object' % (path, n, type(ann).__name__))
        where = '%s: annotation id %s' % (path, ann.get('id', '? (annotations[%d])' % n))
        if 'id' not in ann:
            raise ValueError('%s has no "id"' % where)
        for key in ('id', 'image_id', 'category_id'):
            if key in ann:
                identifier(ann[key], where, key)
        # pycocotools indexes annotations by id: of two with one id it scores the last one twice, the first never
        if ann_index.setdefault(ann['id'], n) != n:
            raise ValueError('%s is given twice (annotations[%d] and annotations[%d])'
                             % (where, ann_index[ann['id']], n))
        if ann.get('category_id', 1) != 1:
            continue
        missing = [k for k in ('image_id', 'keypoints', 'bbox') + tuple(required) if k not in ann]
        if missing:
            raise ValueError('%s has no %s' % (where, ', '.join(missing)))
        if ann['image_id'] not in index:
            raise ValueError('%s names image id %s, which is not in "images"' % (where, ann['image_id']))
        _check_keypoints(ann['keypoints'], where, num_keypoints)
        check_box(ann['bbox'], where)
        for key in ('area', 'num_keypoints'):
            if key in ann:
                number(ann[key], where, key, minimum=0)
        # PoseTrack18's files write iscrowd as a JSON boolean (false/true); pycocotools reads it as 0/1
        if 'iscrowd' in ann and not isinstance(ann['iscrowd'], bool) and \
                number(ann['iscrowd'], where, 'iscrowd') not in (0, 1):
            raise ValueError('%s: iscrowd is %r, expected 0 or 1' % (where, ann['iscrowd']))
    return index


def validate_keypoint_results(records, name, image_ids, category_ids, num_kp):
    """COCO keypoint results (predictions): every record is a dict with image_id (an image of the GT),
    category_id (a GT category), keypoints (3 * num_kp finite numbers; any length divisible by 3 when
    num_kp is None) and a finite numeric score. ValueError naming ``name``, the record index and the field."""
    for i, rec in enumerate(records):
        where = '%s: record %d' % (name, i)
        if not isinstance(rec, dict):
            raise ValueError('%s is a %s, not a dict' % (where, type(rec).__name__))
        missing = [k for k in ('image_id', 'category_id', 'keypoints', 'score') if k not in rec]
        if missing:
            raise ValueError('%s lacks field(s) %s' % (where, ', '.join(missing)))
        identifier(rec['image_id'], where, 'image_id')
        identifier(rec['category_id'], where, 'category_id')
        if rec['image_id'] not in image_ids:
            raise ValueError('%s has image_id %r, which is not an image of the ground truth'
                             % (where, rec['image_id']))
        if rec['category_id'] not in category_ids:
            raise ValueError('%s has category_id %r; the ground truth has %s'
                             % (where, rec['category_id'], sorted(category_ids)))
        kps = numbers(flatten_pairs(rec['keypoints']), where, 'keypoints', None if num_kp is None else 3 * num_kp,
                      note=' (= 3 x %s keypoints)' % num_kp)
        if len(kps) % 3:
            raise ValueError('%s: keypoints has %d values, not (x, y, score) triples' % (where, len(kps)))
        number(rec['score'], where, 'score')


def flatten_pairs(values):
    """[[x, y], ...] -> [x, y, ...] (one level; anything else is left for :func:`numbers` to reject).
    Also used for (K, 3) keypoint results given as nested lists, which the evaluator always accepted."""
    if not isinstance(values, list):
        return values
    return [v for p in values for v in (p if isinstance(p, list) else [p])]


def mpii_joints(entry, where, num_joints):
    """(joints (J, 2), joints_vis (J,)) float64 of an MPII json entry; joints_vis (0 or 1) defaults to ones."""
    joints = entry['joints']
    if not isinstance(joints, list) or len(joints) != num_joints:
        raise ValueError('%s: joints has %s entries, expected %d [x, y] pairs'
                         % (where, len(joints) if isinstance(joints, list) else repr(joints), num_joints))
    arr = numbers(flatten_pairs(joints), where, 'joints', length=2 * num_joints, note=' (%d joints x 2)' % num_joints)
    vis = numbers(entry.get('joints_vis', [1] * num_joints), where, 'joints_vis', length=num_joints)
    if not set(vis) <= {0, 1}:   # 0 / 1 (HRNet's format): 7 became a loss weight of 14, -1 an unlabelled joint
        j = next(j for j, v in enumerate(vis) if v not in (0, 1))
        raise ValueError('%s: joints_vis[%d] is %g, expected 0 or 1' % (where, j, vis[j]))
    return np.asarray(arr, np.float64).reshape(num_joints, 2), np.asarray(vis, np.float64)
