"""The CPN top-down pipeline (MLPE; pytorch-cpn's harness), ``docs/reference/mlpe_hsrnet_gcpose.md`` §1.7.

Differs from the Megvii / Simple Baselines pipelines on purpose (docs/reference/mlpe_hsrnet_gcpose.md §5: separate
presets, not one blob): the image is padded by max(H, W) with the pixel mean, the GT box (x1, y1, x2, y2) is extended by
(1 + 2 * 0.1) x (1 + 2 * 0.15) (x 1.25 more at train), fitted to the input aspect by its binding side,
clamped inside the padded image and resized (no affine warp). Training records are replicated 4x with an
``operation`` 0..3: all get a random central zoom, op 1 a horizontal flip, ops 2 and 3 a rotation.
Colour: per-channel multiply U(0.8, 1.2), clamp to [0, 1]; RGB minus mean / 255, no std.

Samples follow docs/DESIGN.md. Val ``center`` / ``scale`` describe the (clamped, integer) crop box, so the
generic mapping ``center + (u / W - 0.5) * scale * PIXEL_STD`` of a decoded ``u = 4 x + 2`` equals the
original's ``(4 x + 2) / W * crop_w + crop_x0``.
"""
import os.path as osp

import cv2
import numpy as np
import torch

from .coco import box_record, coco_det_records, coco_gt_records
from .meta import flip_permutation
from .topdown import TopDownDataset
from .validate import config_file

__all__ = ['CPNDataset', 'cpn_crop_box', 'cpn_zoom', 'cpn_flip', 'cpn_rotate']

UNLABELLED = -1e6   # the original moves v == 0 joints far away so no augmentation brings them back


def cpn_crop_box(box_xyxy, padded_hw, input_hw, extension=(0.1, 0.15), train_scale=1.0, pad=0):
    """Integer crop (min_x, min_y, max_x, max_y) in padded-image pixels (pytorch-cpn's crop rule).

    Args:
        box_xyxy: person box (x1, y1, x2, y2) in image pixels.
        padded_hw: (H, W) of the image after padding ``pad`` pixels on every side.
        input_hw: network input (h, w); the crop gets its aspect ratio.
        extension: (x, y) extension factors: the box grows by (1 + 2 ex, 1 + 2 ey).
        train_scale: 1.25 at train time, 1 at test time.
    """
    h, w = input_hw
    b = np.asarray(box_xyxy, np.float32).reshape(4) + np.float32(pad)
    cx, cy = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
    crop_w = (b[2] - b[0]) * (1 + extension[0] * 2) * train_scale
    crop_h = (b[3] - b[1]) * (1 + extension[1] * 2) * train_scale
    size, side = (crop_h, h) if crop_h / h > crop_w / w else (crop_w, w)   # binding side
    # stay inside the padded image (the original's four clamps)
    size = min(size, cx / w * side * 2.0 - 1.0, (padded_hw[1] - cx) / w * side * 2.0 - 1.0,
               cy / h * side * 2.0 - 1.0, (padded_hw[0] - cy) / h * side * 2.0 - 1.0)
    half_w, half_h = size / 2.0 / side * w, size / 2.0 / side * h
    return int(cx - half_w), int(cy - half_h), int(cx + half_w), int(cy + half_h)


def cpn_zoom(img, joints, factor):
    """Central zoom: crop the half-size min(W/2, W/2 / 1.25 * factor) (likewise H) around the centre and
    resize back; factor >= 1.25 is a no-op. Joints (K, 3) move accordingly; those outside get v = 0."""
    height, width = img.shape[:2]
    cx, cy = width / 2.0, height / 2.0
    hw = min(width - cx, (width - cx) / 1.25 * factor)
    hh = min(height - cy, (height - cy) / 1.25 * factor)
    part = img[int(cy - hh):int(cy + hh + 1), int(cx - hw):int(cx + hw + 1)]
    img = cv2.resize(part, (width, height), interpolation=cv2.INTER_LINEAR)
    joints = joints.copy()
    joints[:, 0] = (joints[:, 0] - cx) / hw * (width - cx) + cx
    joints[:, 1] = (joints[:, 1] - cy) / hh * (height - cy) + cy
    joints[:, 2] *= _inside(joints, width, height)
    return img, joints


def _inside(joints, width, height):
    return (joints[:, 0] >= 0) & (joints[:, 0] < width) & (joints[:, 1] >= 0) & (joints[:, 1] < height)


def cpn_flip(img, joints, flip_pairs):
    """Horizontal flip; x -> W - 1 - x for x >= 0 (unlabelled joints stay far away); L/R pairs swapped."""
    width = img.shape[1]
    joints = joints.copy()
    labelled = joints[:, 0] >= 0
    joints[labelled, 0] = width - 1 - joints[labelled, 0]
    return cv2.flip(img, 1), joints[flip_permutation(len(joints), flip_pairs)]


def cpn_rotate(img, joints, angle):
    """Rotate by ``angle`` degrees about the crop centre; joint coordinates are truncated to int as the
    original; joints that leave the crop get v = 0 (joints with x < 0 or y < 0 are not moved)."""
    height, width = img.shape[:2]
    mat = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
    img = cv2.warpAffine(img, mat, (width, height))
    joints = joints.copy()
    move = (joints[:, 0] >= 0) & (joints[:, 1] >= 0)
    joints[move, :2] = joints[move, :2] @ mat[:, :2].T + mat[:, 2]
    joints[:, 2] *= _inside(joints, width, height)
    joints[:, :2] = np.trunc(joints[:, :2])
    return img, joints


def _with_xyxy(rec):
    """A detection record with ``box_xyxy`` (x1, y1, x2, y2) float32 from its xywh ``bbox``."""
    x, y, w, h = (float(v) for v in rec['bbox'])
    rec['box_xyxy'] = np.array([x, y, x + w, y + h], np.float32)
    return rec


class CPNDataset(TopDownDataset):
    """Pipeline 'cpn' (split 'train' or 'val'); reuses TopDownDataset's records, RNG and val sample."""

    PIPELINES = ('cpn',)

    def load_records(self):
        d, t = self.cfg.DATASET, self.cfg.TEST
        if self.meta.name != 'COCO':
            raise ValueError('the cpn pipeline reads COCO keypoint files only, not %s' % self.meta.name)
        images = osp.join(d.ROOT, d.TRAIN_IMAGES if self.train else d.VAL_IMAGES)
        ann = config_file(d.ROOT, d.TRAIN_ANN if self.train else d.VAL_ANN,
                          'DATASET.TRAIN_ANN' if self.train else 'DATASET.VAL_ANN')
        if self.train or t.USE_GT_BBOX:
            records = coco_gt_records(ann, images, self.meta, load_min_num=d.KEYPOINT.LOAD_MIN_NUM)
            for r in records:   # label_transform.py keeps the GT box as integer corners
                x, y, w, h = (float(v) for v in r['bbox'])
                r['box_xyxy'] = np.array([int(x), int(y), int(x + w), int(y + h)], np.float32)
            return records
        self.det_stats = {}
        records = coco_det_records(config_file(d.ROOT, t.DET_FILE, 'TEST.DET_FILE'), ann, images, self.meta,
                                   score_thresh=t.DET_SCORE_THRESH, stats=self.det_stats)
        return [_with_xyxy(r) for r in records]

    def box_record(self, box, score, image_id, image=None, image_path=None):
        """As :meth:`TopDownDataset.box_record` and :meth:`load_records`' detections: the record of
        ``coco_det_records``' defaults plus the float ``box_xyxy`` this pipeline crops (centre/scale unused)."""
        return _with_xyxy(box_record(box, score, image_id, self.meta.num_keypoints, image_path, image=image))

    def __len__(self):
        n = len(self.records)
        return n * int(self.cfg.DATASET.TRAIN.NUM_REPLICAS) if self.train else n

    def _crop(self, img, box, joints, train):
        """Mean-padded crop resized to the input; returns (uint8 crop, joints in crop pixels, box)."""
        pad = max(img.shape[0], img.shape[1])
        mean = [float(m) * 255.0 for m in self.cfg.INPUT.MEANS]   # RGB pixel mean (the padding value)
        padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=mean)
        ext = (self.cfg.DATASET.TRAIN.X_EXTENTION, self.cfg.DATASET.TRAIN.Y_EXTENTION) if train else \
            (self.cfg.TEST.X_EXTENTION, self.cfg.TEST.Y_EXTENTION)
        scale = self.cfg.DATASET.TRAIN.SCALE if train else 1.0
        x0, y0, x1, y1 = cpn_crop_box(box, padded.shape[:2], self.input_hw, ext, scale, pad)
        if x1 <= x0 or y1 <= y0:
            raise ValueError('cpn crop: empty crop for box %s' % (list(box),))
        crop = cv2.resize(padded[y0:y1, x0:x1], (self.input_hw[1], self.input_hw[0]))
        if joints is not None:
            joints = joints.copy()
            joints[:, 0] = (joints[:, 0] + pad - x0) * (self.input_hw[1] / (x1 - x0))
            joints[:, 1] = (joints[:, 1] + pad - y0) * (self.input_hw[0] / (y1 - y0))
        return crop, joints, (x0 - pad, y0 - pad, x1 - pad, y1 - pad)

    def __getitem__(self, index):
        n_rep = int(self.cfg.DATASET.TRAIN.NUM_REPLICAS) if self.train else 1
        rec = self.records[index // n_rep]
        where = '%s #%d (ann id %s)' % (self.split, index, rec.get('ann_id'))
        img = self.read_record_image(rec, where)
        if not self.train:
            crop, _, (x0, y0, x1, y1) = self._crop(img, rec['box_xyxy'], None, False)
            center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0], np.float32)
            scale = np.array([x1 - x0, y1 - y0], np.float32) / self.pixel_std
            return self._val_sample(crop, center, scale, rec, index)
        joints = rec['joints'].astype(np.float64).copy()
        joints[joints[:, 2] == 0, :2] = UNLABELLED
        crop, joints, _ = self._crop(img, rec['box_xyxy'], joints, True)
        return self._train_sample(crop, joints, index % n_rep, self.rng_for(index))

    def _train_sample(self, crop, joints, operation, rng):
        """4-way augmentation (``operation`` 0..3), colour jitter, normalisation, CPN targets; ``rng`` is the
        sample's augmentation RNG (``rng_for(index)``)."""
        tr = self.cfg.DATASET.TRAIN
        img = crop.astype(np.float32) / 255.0
        img, joints = cpn_zoom(img, joints, rng.uniform(*tr.ZOOM_RANGE))
        if operation == 1:
            img, joints = cpn_flip(img, joints, self.flip_pairs)
        elif operation > 1:
            angle = rng.uniform(0, tr.ROTATION_FACTOR) * (-1 if rng.randint(0, 2) else 1)
            img, joints = cpn_rotate(img, joints, angle)
        jitter = rng.uniform(tr.COLOR_JITTER[0], tr.COLOR_JITTER[1], size=3).astype(np.float32)
        img = np.clip(img * jitter, 0.0, 1.0)
        img = (img - np.asarray(self.cfg.INPUT.MEANS, np.float32)) / np.asarray(self.cfg.INPUT.STDS, np.float32)
        vis = joints[:, 2].astype(np.float32)
        xy = np.where(vis[:, None] > 0, joints[:, :2], 0.0)
        enc = self.codec.encode(xy, vis)
        return dict(image=torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
                    target=torch.from_numpy(enc['heatmaps']), target_weight=torch.from_numpy(enc['keypoint_weights']))
