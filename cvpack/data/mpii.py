"""MPII records from the HRNet/mmpose JSON (``docs/reference/rsn_mspn.md`` §3.3).

Each entry is ``{image, center [x, y], scale, joints [[x, y]] * 16, joints_vis [0/1] * 16}`` with 1-based
(Matlab) coordinates and optionally ``headbox`` [[x1, y1], [x2, y2]] (kept for PCKh when present).
Records follow :mod:`cvpack.data.coco` (``ann_id`` = the entry's index in the file).
"""
import logging
import os.path as osp

import numpy as np

from .validate import flatten_pairs, mpii_joints, number, numbers, read_json, warn_skipped

__all__ = ['mpii_records']

logger = logging.getLogger(__name__)


def _image_id(name):
    """Image id = file name without extension (Megvii); an int when it is all digits, as the COCO ids."""
    stem = osp.splitext(osp.basename(name))[0]
    return int(stem) if stem.isdigit() else stem


def _entry_arrays(entry, ann_file, i, num_joints):
    """Validated (joints (J, 2), joints_vis (J,), center (2,), scale) of entry ``i`` (ValueError naming it)."""
    if not isinstance(entry, dict):
        raise ValueError('%s: entry #%d is a %s, not an object' % (ann_file, i, type(entry).__name__))
    for key in ('image', 'center', 'scale'):
        if key not in entry:
            raise ValueError('%s: entry #%d has no %r' % (ann_file, i, key))
    where = '%s: entry #%d (%s)' % (ann_file, i, entry['image'])
    if not isinstance(entry['image'], str):
        raise ValueError('%s: image is %r, not a file name' % (where, entry['image']))
    if 'joints' in entry:
        joints, vis = mpii_joints(entry, where, num_joints)
    else:  # test.json has no joints
        joints, vis = np.zeros((num_joints, 2)), np.zeros(num_joints)
    center = np.asarray(numbers(entry['center'], where, 'center', length=2), np.float32)
    scale = number(entry['scale'], where, 'scale')
    if 'headbox' in entry:
        numbers(flatten_pairs(entry['headbox']), where, 'headbox', length=4)
    return joints.astype(np.float32), vis.astype(np.float32), center, scale


def mpii_records(ann_file, image_dir, meta, scale_padding=1.0, check_images=True):
    """Records of an MPII JSON file.

    Megvii loading (docs/reference/rsn_mspn.md §3.3): ``scale = (s, s)``; if ``center.x != -1`` then ``center.y += 15
    s`` (pixels, s in units of 200 px); centre and joints -1 (1-based -> 0-based); visibility ``joints_vis * 2`` (0 or
    2). ``scale_padding``: 1.0 for Megvii (its 0.25 extension does the job), 1.25 for HRNet/Simple Baselines.
    Missing image files are skipped, counted and logged (with ``check_images``).

    Validation (:mod:`cvpack.data.validate`): joints (16 [x, y]), joints_vis, center, scale and headbox must be
    finite numbers (not strings, booleans, NaN/inf) of the right count, else ValueError naming the file, the
    entry index and the field. An entry with ``scale <= 0`` (the MPII box, degenerate) is skipped, with one
    warning that counts them and names a few (file + entry index), as the COCO loaders do with boxes.
    """
    entries = read_json(ann_file, 'MPII annotation')
    if not isinstance(entries, list):
        raise ValueError('%s: expected a list of {image, center, scale, joints, joints_vis}' % ann_file)
    records, missing, degenerate = [], [], []
    for i, entry in enumerate(entries):
        joints, vis, center, s = _entry_arrays(entry, ann_file, i, meta.num_keypoints)
        if s <= 0:
            degenerate.append('entry #%d scale %r' % (i, entry['scale']))
            continue
        if center[0] != -1:
            center[1] = center[1] + 15 * s
        center = center - 1
        path = osp.join(image_dir, entry['image'])
        if check_images and not osp.isfile(path):
            missing.append(path)
            continue
        rec = dict(image_path=path, image_id=_image_id(entry['image']), ann_id=i, center=center,
                   scale=np.array([s, s], np.float32) * scale_padding,
                   joints=np.concatenate([joints - 1, vis[:, None] * 2], axis=1).astype(np.float32),
                   score=1.0, bbox=np.array([center[0] - 100 * s, center[1] - 100 * s, 200 * s, 200 * s],
                                            np.float32))   # the (s x 200)^2 square, for display only
        if 'headbox' in entry:
            rec['headbox'] = np.asarray(entry['headbox'], np.float32).reshape(2, 2) - 1
        records.append(rec)
    if missing:
        logger.warning('%s: skipped %d entries whose image files are missing, e.g. %s',
                       ann_file, len(missing), missing[:3])
    warn_skipped(logger, ann_file, 'entries', degenerate, len(degenerate), 'degenerate box: scale <= 0')
    return records
