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

from cvpack.data.coco import record_id, load_coco_gt
from cvpack.data.meta import get_dataset_meta
from cvpack.data.validate import box_is_degenerate, warn_skipped

logger = logging.getLogger(__name__)


def load_person_records(ann_file, image_dir, train, min_keypoints=1, meta=None, check_images=True, max_images=0):
    """Args: COCO keypoint json, image folder, train flag, min labelled keypoints per train image, DatasetMeta
    (default COCO), check_images: look for each image file now, not when a worker reads it; max_images N > 0
    (val, TEST.MAX_IMAGES): look for the files of the first N images only, those test.py will read.
    Returns a list of record dicts, in the file's image order,
    {file, image_id (int, or the file's str id as given), height, width, boxes (G, 4) float32 xyxy,
    keypoints (G, K, 3) float64}.

    Every image needs ``file_name`` and whole-number ``height`` / ``width`` (aspect-ratio grouping and the size
    check of each read use them): else a ValueError naming the file and the image id. Missing image files: train
    skips their images with one warning (as the top-down loaders), val is an error listing them (every val image is
    scored: test.py and the evaluation during training stop before any inference instead of at the image)."""
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
    records, missing = [], []
    for n, img in enumerate(images.values()):
        where = '%s: image id %s' % (ann_file, img['id'])
        absent = [key for key in ('file_name', 'height', 'width') if key not in img]
        if absent:   # validation allows them absent; a bare KeyError named neither the file nor the image
            raise ValueError('%s has no %s' % (where, ', '.join(absent)))
        for key in ('height', 'width'):
            if img[key] != int(img[key]):
                raise ValueError('%s: %s is %r, not a whole number of pixels' % (where, key, img[key]))
        objs = anns.get(img['id'], [])
        # Detectron2's numbers: BoxMode.convert adds w, h in float32 (torch.tensor of the list); its loader's
        # keypoints (+0.5 on Python floats) stay float64 through the transforms, rounded once (dataset.py)
        xywh = np.asarray([a['bbox'] for a in objs], np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        kps = np.asarray([a['keypoints'] for a in objs], np.float64).reshape(-1, k, 3)
        kps[..., :2] += 0.5
        if train and (not objs or int((kps[..., 2] > 0).sum()) < min_keypoints):
            continue
        path = osp.join(image_dir, img['file_name'])
        # val keeps every image in file order, so the first N images are the N records TEST.MAX_IMAGES tests: a
        # file absent further on is never read, and a big val set is not stat'ed whole for 10 images
        if check_images and (train or not max_images or n < max_images) and not osp.isfile(path):
            missing.append('image id %s: %s' % (img['id'], path))
            continue
        records.append({'file': path, 'image_id': record_id(img['id']),
                        'height': int(img['height']), 'width': int(img['width']),
                        'boxes': boxes.reshape(-1, 4), 'keypoints': kps})
    if missing and not train:
        raise ValueError('%s: %d of its %simages have no file in %s, e.g. %s'
                         % (ann_file, len(missing), 'first %d (TEST.MAX_IMAGES) ' % max_images if max_images else '',
                            image_dir, '; '.join(missing[:3])))
    warn_skipped(logger, ann_file, 'images', missing, len(missing), 'no image file')
    if not records:
        raise ValueError('%s: no usable person images (train=%s%s)'
                         % (ann_file, train, ', %d images without a file' % len(missing) if missing else ''))
    return records
