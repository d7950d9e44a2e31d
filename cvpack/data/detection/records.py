"""COCO person records for whole-image detection training.

Detectron2 dataset rules (reference_mlpe_hsrnet_gcpose.md §4.1).

Train: crowd annotations dropped, images without annotations dropped, images with fewer than
``min_keypoints`` labelled keypoints (v > 0) in total dropped. Val: every image of the file is kept
(its annotations are only needed by the COCO evaluator). Keypoint x, y get +0.5 (pixel index ->
continuous coordinate, Detectron2 ``annotations_to_instances``); boxes become xyxy.
"""
import json
import os.path as osp
from collections import defaultdict

import numpy as np

from ..meta import get_dataset_meta


def load_person_records(ann_file, image_dir, train, min_keypoints=1, num_keypoints=17):
    """Args: COCO keypoint json, image folder, train flag. Returns a list of record dicts
    {file, image_id, height, width, boxes (G, 4) float32 xyxy, keypoints (G, K, 3) float32}."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError('COCO annotation file not found: %s' % ann_file)
    with open(ann_file) as f:
        data = json.load(f)
    get_dataset_meta('COCO').validate_coco_categories(data.get('categories', []), ann_file)
    anns = defaultdict(list)
    for a in data.get('annotations', []):
        if a.get('category_id', 1) == 1 and not a.get('iscrowd', 0):
            anns[a['image_id']].append(a)
    records = []
    for img in data['images']:
        objs = anns.get(img['id'], [])
        boxes, kps = [], []
        for a in objs:
            x, y, w, h = a['bbox']
            k = np.asarray(a.get('keypoints') or [0] * (3 * num_keypoints), dtype=np.float32)
            if k.size != 3 * num_keypoints:
                raise ValueError('%s: annotation %s has %d keypoint values, expected %d'
                                 % (ann_file, a.get('id'), k.size, 3 * num_keypoints))
            k = k.reshape(num_keypoints, 3)
            k[:, :2] += 0.5
            boxes.append([x, y, x + w, y + h])
            kps.append(k)
        if train:
            if not objs or sum(int((k[:, 2] > 0).sum()) for k in kps) < min_keypoints:
                continue
        records.append({
            'file': osp.join(image_dir, img['file_name']), 'image_id': int(img['id']),
            'height': int(img['height']), 'width': int(img['width']),
            'boxes': np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            'keypoints': np.asarray(kps, dtype=np.float32).reshape(-1, num_keypoints, 3),
        })
    if not records:
        raise ValueError('%s: no usable person images (train=%s)' % (ann_file, train))
    return records
