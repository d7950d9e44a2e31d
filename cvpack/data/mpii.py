"""MPII records from the HRNet/mmpose JSON (``reference_rsn_mspn.md`` §3.3).

Each entry is ``{image, center [x, y], scale, joints [[x, y]] * 16, joints_vis [0/1] * 16}`` with 1-based
(Matlab) coordinates and optionally ``headbox`` [[x1, y1], [x2, y2]] (kept for PCKh when present).
Records follow :mod:`cvpack.data.coco` (``ann_id`` = the entry's index in the file).
"""
import json
import logging
import os.path as osp

import numpy as np

__all__ = ['mpii_records']

logger = logging.getLogger(__name__)


def _image_id(name):
    """Image id = file name without extension (Megvii); an int when it is all digits, as the COCO ids."""
    stem = osp.splitext(osp.basename(name))[0]
    return int(stem) if stem.isdigit() else stem


def _entry_arrays(entry, ann_file, i, num_joints):
    for key in ('image', 'center', 'scale'):
        if key not in entry:
            raise ValueError('%s: entry #%d has no %r' % (ann_file, i, key))
    if 'joints' in entry:
        joints = np.asarray(entry['joints'], np.float32)
        vis = np.asarray(entry.get('joints_vis', np.ones(len(joints))), np.float32).reshape(-1)
        if joints.shape != (num_joints, 2) or vis.shape != (num_joints,):
            raise ValueError('%s: entry #%d (%s) has joints of shape %s and joints_vis of shape %s, '
                             'expected (%d, 2) and (%d,)' % (ann_file, i, entry['image'], joints.shape,
                                                             vis.shape, num_joints, num_joints))
    else:  # test.json has no joints
        joints, vis = np.zeros((num_joints, 2), np.float32), np.zeros(num_joints, np.float32)
    return joints, vis


def mpii_records(ann_file, image_dir, meta, scale_padding=1.0, check_images=True):
    """Records of an MPII JSON file.

    Megvii loading (§3.3): ``scale = (s, s)``; if ``center.x != -1`` then ``center.y += 15 s`` (pixels, s in
    units of 200 px); centre and joints -1 (1-based -> 0-based); visibility ``joints_vis * 2`` (0 or 2).
    ``scale_padding``: 1.0 for Megvii (its 0.25 extension does the job), 1.25 for HRNet/Simple Baselines.
    Missing image files are skipped, counted and logged (with ``check_images``).
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError('MPII annotation file not found: %s' % ann_file)
    with open(ann_file) as f:
        try:
            entries = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError('MPII annotation file %s is not valid JSON: %s' % (ann_file, e)) from None
    if not isinstance(entries, list):
        raise ValueError('%s: expected a list of {image, center, scale, joints, joints_vis}' % ann_file)
    records, missing = [], []
    for i, entry in enumerate(entries):
        joints, vis = _entry_arrays(entry, ann_file, i, meta.num_keypoints)
        s = float(entry['scale'])
        center = np.asarray(entry['center'], np.float32).copy()
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
    return records
