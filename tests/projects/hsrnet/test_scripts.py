"""End to end through the real exp scripts: 2 training iterations on the COCO subset, then test.py."""
import json
import os
import os.path as osp

import pytest

from tests.projects.scripts import run_script


@pytest.mark.slow
def test_train_then_test_scripts(repo_root, coco_subset, tmp_path):
    exp_dir = osp.join(repo_root, 'projects', 'HSRNet', 'exps', 'hsr_msnet59.256x192.coco')
    out = str(tmp_path / 'out')
    common = ['DATASET.ROOT', coco_subset, 'OUTPUT_DIR', out, 'MODEL.PRETRAINED', '', 'DATALOADER.NUM_WORKERS', '0',
              'INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]', 'SOLVER.EPOCHS', 'None']
    log = run_script(exp_dir, 'train.py', ['SOLVER.MAX_ITER', '2', 'SOLVER.IMS_PER_GPU', '2',
                                           'SOLVER.CHECKPOINT_PERIOD', '2'] + common)
    assert 'joints_mse' in log
    assert osp.isfile(osp.join(out, 'iter-2.pth'))
    run_script(exp_dir, 'test.py', ['-i', '2', 'TEST.USE_GT_BBOX', 'True', 'TEST.IMS_PER_GPU', '32'] + common)
    results = [osp.join(dp, f) for dp, _, fs in os.walk(out) for f in fs if f == 'results.json']
    assert results, 'test.py wrote no results.json under %s' % out
    with open(results[0]) as f:
        instances = json.load(f)
    gt = json.load(open(osp.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')))
    boxes = {}
    for a in gt['annotations']:
        boxes.setdefault(a['image_id'], []).append(a['bbox'])
    assert instances and all(len(r['keypoints']) == 17 * 3 and r['category_id'] == 1 for r in instances)
    for r in instances:   # image pixels: every keypoint inside the crop of one of the image's person boxes
        assert any(_in_crop(r['keypoints'], box) for box in boxes[r['image_id']]), r


def _in_crop(keypoints, box, aspect=48 / 64, padding=1.25, cells=(16, 12)):
    """Simple Baselines crop of ``box`` (aspect fit, x1.25), one heatmap cell of margin."""
    x, y, w, h = box
    w, h = (w, w / aspect) if w > aspect * h else (h * aspect, h)
    w, h = w * padding, h * padding
    half_w, half_h = w / 2 + w / cells[1], h / 2 + h / cells[0]
    cx, cy = x + box[2] / 2, y + box[3] / 2
    return all(abs(px - cx) <= half_w and abs(py - cy) <= half_h
               for px, py in zip(keypoints[0::3], keypoints[1::3]))
