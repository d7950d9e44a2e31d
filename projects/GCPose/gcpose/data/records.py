"""COCO person records for whole-image detection training.

Detectron2 dataset rules (docs/reference/mlpe_hsrnet_gcpose.md §4.1).

Train: crowd annotations dropped, images without annotations dropped, images with fewer than
``min_keypoints`` labelled keypoints (v > 0) in total dropped. Val: every image of the file is kept
(its annotations are only needed by the COCO evaluator). Keypoint x, y get +0.5 (pixel index ->
continuous coordinate, Detectron2 ``annotations_to_instances``); boxes become xyxy. The file is read and
validated by :func:`cvpack.data.coco.load_coco_gt` (sections, categories, image ids, keypoint counts, finite
numbers: NaN/inf, strings or booleans are errors naming the file, annotation id and field). Annotations with a
degenerate box (w or h <= 0) are dropped, with one warning that counts them and names a few (file + id), as
in the top-down loaders (Detectron2 drops empty boxes too, silently).
"""
import logging
import os.path as osp
from collections import defaultdict

import numpy as np

from cvpack.data.coco import _plain_id, load_coco_gt
from cvpack.data.meta import get_dataset_meta
from cvpack.data.validate import box_is_degenerate, warn_skipped

logger = logging.getLogger(__name__)


def load_person_records(ann_file, image_dir, train, min_keypoints=1, meta=None):
    """Args: COCO keypoint json, image folder, train flag, min labelled keypoints per train image, DatasetMeta
    (default COCO). Returns a list of record dicts, in the file's image order,
    {file, image_id (int, or the file's str id as given), height, width, boxes (G, 4) float32 xyxy,
    keypoints (G, K, 3) float32}."""
    meta = meta or get_dataset_meta('COCO')
    images, annotations = load_coco_gt(ann_file, meta)
    k = meta.num_keypoints
    anns, degenerate = defaultdict(list), []
    for a in annotations:
        if a.get('category_id', 1) == 1 and not a.get('iscrowd', 0):
            if box_is_degenerate(a['bbox']):
                degenerate.append('annotation id %s bbox %s' % (a['id'], a['bbox']))
                continue
            anns[a['image_id']].append(a)
    warn_skipped(logger, ann_file, 'person annotations', degenerate, len(degenerate), 'degenerate box: w or h <= 0')
    records = []
    for img in images.values():
        objs = anns.get(img['id'], [])
        boxes = np.asarray([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in objs)], np.float32)
        kps = np.asarray([a['keypoints'] for a in objs], np.float32).reshape(-1, k, 3)
        kps[..., :2] += 0.5
        if train and (not objs or int((kps[..., 2] > 0).sum()) < min_keypoints):
            continue
        records.append({'file': osp.join(image_dir, img['file_name']), 'image_id': _plain_id(img['id']),
                        'height': int(img['height']), 'width': int(img['width']),
                        'boxes': boxes.reshape(-1, 4), 'keypoints': kps})
    if not records:
        raise ValueError('%s: no usable person images (train=%s)' % (ann_file, train))
    return records
