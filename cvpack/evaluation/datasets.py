"""What COCO-style datasets other than COCO need before pycocotools sees them (metadata in
:mod:`cvpack.data.meta`): the OKS area from the box (CrowdPose, AIC and PoseTrack18 files have no area),
PoseTrack18's ignore regions and CrowdPose's easy / medium / hard split by crowd index. No xtcocotools /
crowdposetools: pycocotools with the dataset's OKS sigmas and these areas gives their numbers (mmpose's
``CocoMetric(use_area=False)``, with ``iou_type='keypoints_crowd'`` for CrowdPose; tests/evaluation/
test_dataset_metrics.py)."""
import numpy as np

__all__ = ['prepare_gt', 'drop_in_ignore_regions', 'crowd_index_split', 'BOX_AREA_FACTOR', 'CROWD_INDEX_THRESHOLDS']

# The OKS scale of a person without a segmentation area: 0.53 * bbox w * h, crowdposetools' and xtcocotools'
# ``use_area=False`` (the share of its box a person's outline covers on average, as CrowdPose's authors took it)
BOX_AREA_FACTOR = 0.53
# crowdposetools' get_type_result(first=0.2, second=0.8), which mmpose's xtcocotools copies: the code behind
# every published CrowdPose AP(E)/(M)/(H); the paper's text says 0.1 for the first bound
CROWD_INDEX_THRESHOLDS = (0.2, 0.8)


def prepare_gt(data, fill_area=False):
    """GT dict -> the same dict with ``iscrowd`` 0 where an annotation has none (AIC) and a JSON-boolean iscrowd
    (PoseTrack18) made 0/1; with ``fill_area`` (datasets whose files carry no area: metadata
    ``extra['fill_area']``: CrowdPose, AIC, PoseTrack18) also ``area`` = 0.53 * bbox w * h for every annotation
    (:data:`BOX_AREA_FACTOR`; an area in the file is replaced, as ``use_area=False`` ignores it) and a missing
    ``num_keypoints`` (labelled joints). pycocotools needs all three; the area is the OKS scale and decides
    APm/APl. A COCO file without area stays an error (validation); anything but a dict is returned as given, for
    the validation to name (MPII's valid.json, a list, was a bare AttributeError)."""
    if not isinstance(data, dict):
        return data
    for ann in data.get('annotations', []):
        if isinstance(ann, dict):
            ann['iscrowd'] = int(ann.get('iscrowd', 0)) if isinstance(ann.get('iscrowd', 0), bool) \
                else ann.get('iscrowd', 0)
        if not (fill_area and isinstance(ann, dict)):
            continue
        box = ann.get('bbox')
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            # xtcocotools: gt['bbox'][3] * gt['bbox'][2] * 0.53, in this order (the same float)
            ann['area'] = box[3] * box[2] * BOX_AREA_FACTOR
        if 'keypoints' in ann and 'num_keypoints' not in ann:
            ann['num_keypoints'] = int(np.sum(np.asarray(ann['keypoints'], np.float64).reshape(-1, 3)[:, 2] > 0))
    return data


def _polygons(img):
    xs, ys = img.get('ignore_regions_x') or [], img.get('ignore_regions_y') or []
    return [np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], 1)
            for x, y in zip(xs, ys) if len(x) >= 3 and len(x) == len(y)]


def _inside(point, poly):
    """Even-odd rule: is ``point`` (x, y) inside the polygon ``poly`` (N, 2)?"""
    x, y = point
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide='ignore', invalid='ignore'):
        xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return bool(np.sum(crosses & (x < xint)) % 2)


def drop_in_ignore_regions(instances, images):
    """PoseTrack18: drop predicted people whose centre (mean of their keypoints) lies in an ignore region of
    their image (``ignore_regions_x`` / ``_y`` polygons of the image entry), as PoseTrack's evaluation does:
    people there are not labelled, so a prediction there would count as a false positive.

    ``images``: {image id: image dict}. Returns (kept instances, number dropped)."""
    kept, dropped = [], 0
    for inst in instances:
        polys = _polygons(images.get(inst['image_id'], {}))
        centre = np.asarray(inst['keypoints'], np.float64).reshape(-1, 3)[:, :2].mean(0)
        if any(_inside(centre, p) for p in polys):
            dropped += 1
        else:
            kept.append(inst)
    return kept, dropped


def crowd_index_split(images, thresholds=CROWD_INDEX_THRESHOLDS):
    """CrowdPose's split of the image ids by ``crowdIndex``: easy < 0.2 <= medium < 0.8 <= hard (crowdposetools')."""
    lo, hi = thresholds
    out = {'easy': [], 'medium': [], 'hard': []}
    for img in images:
        ci = float(img['crowdIndex'])
        out['easy' if ci < lo else 'medium' if ci < hi else 'hard'].append(img['id'])
    return out
