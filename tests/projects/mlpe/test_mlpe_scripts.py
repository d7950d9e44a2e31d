"""2-iteration training and a test run through an MLPE exp's real train.py / test.py on the COCO subset."""
import json
import math
import os
import re

import pytest

from tests.projects.scripts import run_script

EXP = os.path.join('projects', 'MLPE', 'exps', 'mlpe_rs50_256x192_a')


@pytest.mark.slow
def test_train_then_test_scripts(repo_root, coco_subset, tmp_path):
    # a val file with the first two images that have labelled people, to keep the test run short
    gt = json.load(open(os.path.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')))
    ids = sorted({a['image_id'] for a in gt['annotations'] if a['num_keypoints'] > 0})[:2]
    gt['images'] = [im for im in gt['images'] if im['id'] in ids]
    gt['annotations'] = [a for a in gt['annotations'] if a['image_id'] in ids]
    val = tmp_path / 'val.json'
    val.write_text(json.dumps(gt))
    kept = [a for a in gt['annotations'] if a['num_keypoints'] > 0 and not a.get('iscrowd', 0)]

    out = tmp_path / 'out'
    common = ['DATASET.ROOT', coco_subset, 'DATASET.VAL_ANN', str(val), 'OUTPUT_DIR', str(out),
              'DATALOADER.NUM_WORKERS', '0', 'INPUT_SHAPE', '[128, 96]', 'OUTPUT_SHAPE', '[32, 24]']
    cwd = os.path.join(repo_root, EXP)
    log = run_script(cwd, 'train.py', ['SOLVER.EPOCHS', 'None', 'SOLVER.MAX_ITER', '2', 'SOLVER.CHECKPOINT_PERIOD',
                                       '2', 'SOLVER.IMS_PER_GPU', '2', 'SOLVER.LOG_PERIOD', '1'] + common)
    losses = re.findall(r'global_loss: ([-\d.e+naif]+), refine_loss: ([-\d.e+naif]+)', log)
    assert len(losses) == 2 and all(math.isfinite(float(v)) and float(v) > 0 for pair in losses for v in pair)
    assert (out / 'iter-2.pth').is_file()

    run_script(cwd, 'test.py', ['-i', '2', 'TEST.IMS_PER_GPU', '4'] + common)
    results = json.load(open(out / 'test_dir' / 'results.json'))
    assert sorted((r['image_id'] for r in results)) == sorted(a['image_id'] for a in kept)
    for r in results:
        assert r['category_id'] == 1 and len(r['keypoints']) == 51 and r['score'] > 0
    metrics = json.load(open(out / 'test_dir' / 'metrics.json'))
    assert 'AP' in json.dumps(metrics)
