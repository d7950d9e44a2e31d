"""2-iteration train + test of a GCPose exp through its real train.py / test.py on the shipped COCO subset.

A narrow variant (ResNet-18 trunk, 64-channel keypoint head, short side 160, 3 val images) keeps it to
about half a minute on 2 CPU cores; the code path is the exp's own (engine, detection data, model,
predictor, shared COCO evaluator).
"""
import json
import os.path as osp

import pytest

from tests.projects.scripts import run_script


@pytest.mark.slow
def test_train_and_test_scripts(tmp_path, repo_root, coco_subset):
    with open(osp.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')) as f:
        data = json.load(f)
    data['images'] = data['images'][:3]
    ids = {i['id'] for i in data['images']}
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in ids]
    val = tmp_path / 'val3.json'
    val.write_text(json.dumps(data))
    out = tmp_path / 'out'
    opts = ['MODEL.DEVICE', 'cpu', 'MODEL.PRETRAINED', '',      # no ImageNet download in tests
            'DATALOADER.NUM_WORKERS', '0', 'OUTPUT_DIR', str(out),
            'DATASET.ROOT', coco_subset, 'DATASET.VAL_ANN', str(val),
            'SOLVER.MAX_ITER', '2', 'SOLVER.CHECKPOINT_PERIOD', '2', 'SOLVER.REFERENCE_WORLD_SIZE', 'None',
            'INPUT.MIN_SIZE_TRAIN', '[160]', 'INPUT.MAX_SIZE_TRAIN', '256',
            'INPUT.MIN_SIZE_TEST', '160', 'INPUT.MAX_SIZE_TEST', '256',
            'MODEL.BACKBONE', 'resnet18', 'MODEL.ROI_KEYPOINT_HEAD.CONV_DIM', '64',
            'MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE', '16', 'MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE', '3',
            'MODEL.RPN.POST_NMS_TOPK_TRAIN', '50', 'MODEL.RPN.POST_NMS_TOPK_TEST', '50']
    exp = osp.join(repo_root, 'projects', 'GCPose', 'exps', 'gcpose.R50.coco')
    logs = {script: run_script(exp, script, opts, threads=2) for script in ('train.py', 'test.py')}
    # random frozen stem/res2 + FrozenBN (MODEL.PRETRAINED cleared): said once at the start of training only
    assert logs['train.py'].count('MODEL.RESNET.FREEZE_AT 2 and NORM FrozenBN') == 1
    assert 'FREEZE_AT' not in logs['test.py']
    assert (out / 'iter-2.pth').is_file()
    results = json.loads((out / 'test_dir' / 'results.json').read_text())
    assert 0 < len(results) <= 3 * 3
    for res in results:
        assert res['category_id'] == 1 and res['image_id'] in ids and len(res['keypoints']) == 51
        assert all(0 < s <= 1 for s in res['keypoints'][2::3])
    metrics = json.loads((out / 'test_dir' / 'metrics.json').read_text())['metrics']
    assert 0.0 <= metrics['AP'] <= 1.0
    assert 'box_AP' in metrics or not results    # box AP from the detection evaluator
    boxes = json.loads((out / 'test_dir' / 'bbox_results.json').read_text())
    assert len(boxes) == len(results) and all(len(b['bbox']) == 4 and b['bbox'][2] > 0 for b in boxes)
