"""Records of the CrowdPose / OCHuman / AIC / PoseTrack18 subsets against mmpose 1.3.2's dataset classes (test mode,
top-down) on the same files: the same people in the same order, and the documented box conventions (docs/ENGINE.md
"Other pose datasets"): mmpose clips the box to [0, W-1] x [0, H-1]; the Megvii pipeline keeps the annotation box,
Simple Baselines / HSRNet clean it as HRNet (x1 = max(0, x), x2 = min(W-1, x1 + w - 1))."""
import json
import os.path as osp

import numpy as np
import pytest

from cvpack.data.coco import coco_gt_records
from cvpack.data.meta import get_dataset_meta

SUBSETS = {'CROWDPOSE': ('crowdpose_subset', 'images', 'annotations/test_crowdpose.json'),
           'OCHUMAN': ('ochuman_subset', 'images', 'annotations/test_ochuman.json'),
           'AIC': ('aic_subset', 'images', 'annotations/test_aic.json'),
           'POSETRACK18': ('posetrack18_subset', '', 'annotations/test_posetrack18_val.json')}
# annotation ids of the people mmpose's CrowdPoseDataset / OCHumanDataset / AicDataset / PoseTrack18Dataset keep,
# in their order (CrowdPose: 5 annotations, one with num_keypoints 0)
MMPOSE_IDS = {'CROWDPOSE': [123803, 147481, 127068, 129014], 'OCHUMAN': [1, 2, 3, 4, 5], 'AIC': list(range(4, 13)),
              'POSETRACK18': [1012834000000 + i for i in range(11)] + [1009473000000, 1009473000001, 1003418000000]}
# mmpose's clipped xyxy boxes of the two PoseTrack18 people whose boxes leave the frame (1920 x 1080)
MMPOSE_XYXY = {1012834000010: [364.67498779296875, 0.0, 488.82501220703125, 202.69078063964844],
               1003418000000: [214.25, 15.0, 1572.75, 1079.0]}


def _records(repo_root, name, mode):
    folder, images, ann = SUBSETS[name]
    root = osp.join(repo_root, 'dataset', folder)
    recs = coco_gt_records(osp.join(root, ann), osp.join(root, images), get_dataset_meta(name), cs_mode=mode)
    with open(osp.join(root, ann)) as f:
        data = json.load(f)
    return recs, {a['id']: a for a in data['annotations']}, {i['id']: i for i in data['images']}


@pytest.mark.parametrize('mode', ['megvii', 'simple_baselines'])
@pytest.mark.parametrize('name', sorted(SUBSETS))
def test_same_people_joints_and_paths_as_mmpose(repo_root, name, mode):
    recs, anns, images = _records(repo_root, name, mode)
    assert [r['ann_id'] for r in recs] == MMPOSE_IDS[name]
    for r in recs:
        ann, img = anns[r['ann_id']], images[anns[r['ann_id']]['image_id']]
        kps = np.asarray(ann['keypoints'], np.float32).reshape(-1, 3)
        assert np.array_equal(r['joints'], kps)                 # x, y and COCO's 0/1/2 (mmpose: min(1, v))
        assert osp.isfile(r['image_path']) and r['image_path'].endswith(img['file_name'])
        x, y, w, h = ann['bbox']
        if mode == 'megvii':                                    # the annotation box, as given
            assert np.array_equal(r['bbox'], np.asarray([x, y, w, h], np.float32))
        else:                                                   # HRNet's clean-up
            x1, y1 = max(0, x), max(0, y)
            x2, y2 = min(img['width'] - 1, x1 + max(0, w - 1)), min(img['height'] - 1, y1 + max(0, h - 1))
            assert np.array_equal(r['bbox'], np.asarray([x1, y1, x2 - x1, y2 - y1], np.float32))


def test_posetrack_boxes_leaving_the_frame(repo_root):
    """A box above the frame (y = -54.6) is cut by mmpose (y1 = 0, height 202.7) but moved in by HRNet's clean-up
    (y1 = 0, height 256.3): up to 53.6 px apart, as documented."""
    recs = {r['ann_id']: r for r in _records(repo_root, 'POSETRACK18', 'simple_baselines')[0]}
    for ann_id, xyxy in MMPOSE_XYXY.items():
        b = recs[ann_id]['bbox'].astype(np.float64)
        ours = np.r_[b[:2], b[:2] + b[2:]]
        assert ours[:2] == pytest.approx(xyxy[:2], abs=1e-4)
    b = recs[1012834000010]['bbox']
    assert b[3] - (MMPOSE_XYXY[1012834000010][3] - MMPOSE_XYXY[1012834000010][1]) == pytest.approx(53.629, abs=1e-3)
