"""GT keypoints -> Megvii targets in the crop -> predictor (decode + map back) -> COCO evaluator.

Checks that the conventions compose: floor placement + ``x * 4 + 2`` is unbiased in x, the decoder's
symmetric-peak rule gives the documented -0.25 heatmap px (= -1 input px) bias in y
(docs/reference/rsn_mspn.md §5.3), and the image mapping inverts the crop.
"""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from easydict import EasyDict as edict

from cvpack.decode import to_input_coords
from cvpack.evaluation import build_evaluator
from cvpack.inference import build_predictor


class FixedHeatmaps(torch.nn.Module):
    def __init__(self, heatmaps):
        super().__init__()
        self.register_buffer('heatmaps', torch.from_numpy(heatmaps))

    def forward(self, images, targets=None):
        return self.heatmaps


def _targets(joints_in, valid, out_hw=(64, 48), stride=4):
    hm = np.zeros((len(joints_in), out_hw[0], out_hw[1]), np.float32)
    for j, ((x, y), v) in enumerate(zip(joints_in, valid)):
        hx, hy = int(x / stride), int(y / stride)
        if v > 0 and 0 <= hx < out_hw[1] and 0 <= hy < out_hw[0]:
            hm[j, hy, hx] = 1
            hm[j] = cv2.GaussianBlur(hm[j], (7, 7), 0)
            hm[j] *= 255 / hm[j].max()
    return hm


def test_gt_through_predictor_and_evaluator(tmp_path, coco_subset):
    ann_file = os.path.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')
    with open(ann_file) as f:
        anns = [a for a in json.load(f)['annotations'] if not a['iscrowd'] and a['num_keypoints'] > 0]
    cfg = edict(DATASET=edict(NAME='COCO', PIPELINE='megvii', ROOT=coco_subset, PIXEL_STD=200,
                              VAL_ANN='annotations/person_keypoints_val2017.json', META_FILE='',
                              KEYPOINT=edict(FLIP_PAIRS=[[1, 2]])),
                INPUT_SHAPE=[256, 192], OUTPUT_SHAPE=[64, 48], CODEC='megvii',
                TEST=edict(FLIP=False, DECODER='megvii', GAUSSIAN_KERNEL=5, SHIFT_RATIOS=[0.25],
                           RESCORE='megvii', NMS='none', NMS_THRESH=0.9, USE_GT_BBOX=True, FLIP_SHIFT=False,
                           KEYPOINT_THRESH=0.2, PREDICTOR='', EVALUATOR=''))
    x, y, w, h = np.array([a['bbox'] for a in anns], np.float64).T
    center = np.stack([x + w / 2, y + h / 2], 1)
    w, h = np.maximum(w, h * 0.75) * 1.25, np.maximum(h, w / 0.75) * 1.25     # aspect 3:4, 25 % context
    scale = np.stack([w, h], 1) / 200
    kps = np.array([a['keypoints'] for a in anns], np.float64).reshape(-1, 17, 3)
    joints_in = to_input_coords(kps[..., :2], center, scale, (256, 192))
    heatmaps = np.stack([_targets(j, k[:, 2]) for j, k in zip(joints_in, kps)])
    batch = {'image': torch.zeros(len(anns), 3, 8, 8), 'center': torch.from_numpy(center),
             'scale': torch.from_numpy(scale), 'score': [1.0] * len(anns),
             'image_id': [a['image_id'] for a in anns]}
    instances = build_predictor(cfg)(FixedHeatmaps(heatmaps), batch)

    pred_in = to_input_coords(np.stack([i['keypoints'][:, :2] for i in instances]), center, scale, (256, 192))
    inside = (kps[..., 2] > 0) & (joints_in >= 0).all(-1) & (joints_in < [192, 256]).all(-1)
    err = (pred_in - joints_in)[inside]
    assert inside.sum() > 1000
    assert abs(err[:, 0].mean()) < 0.1                       # floor + stride / 2: unbiased
    assert err[:, 1].mean() == pytest.approx(-1.0, abs=0.1)   # -0.25 heatmap px toward the upper neighbour
    # away from the map border (where zero padding pulls the blurred max inwards, as in the original):
    # quantisation <= 2 px plus the shift <= 1 px
    interior = inside & (joints_in >= 4 * 3).all(-1) & (joints_in < [192 - 4 * 3, 256 - 4 * 3]).all(-1)
    assert np.abs(pred_in - joints_in)[interior].max() <= 2 + 1 + 1e-6
    stats = build_evaluator(cfg)(instances, str(tmp_path))
    assert stats['AP'] > 0.9
