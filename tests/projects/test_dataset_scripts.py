"""Every non-COCO built-in dataset trains 2 iterations and tests through RSN18.coco's real scripts, switched with
DATASET.* overrides only (the keypoint count, flip pairs and model width follow DATASET.NAME)."""
import json
import os.path as osp

import pytest

from tests.projects.megvii_helpers import SMALL
from tests.projects.scripts import REPO, run_script

EXP = osp.join(REPO, 'projects', 'RSN', 'exps', 'RSN18.coco')
DATASETS = {   # name: (subset folder, annotation file, extra DATASET.* overrides, keypoints, labelled people)
    'CROWDPOSE': ('crowdpose_subset', 'annotations/test_crowdpose.json', [], 14, 4),
    'OCHUMAN': ('ochuman_subset', 'annotations/test_ochuman.json', [], 17, 5),
    'AIC': ('aic_subset', 'annotations/test_aic.json',
            ['DATASET.TRAIN_IMAGES', 'images', 'DATASET.VAL_IMAGES', 'images'], 14, 9),
    'POSETRACK18': ('posetrack18_subset', 'annotations/test_posetrack18_val.json', [], 17, 14),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(DATASETS))
def test_train_then_test_on_subset(tmp_path, name):
    folder, ann, extra, num_kp, people = DATASETS[name]
    out = tmp_path / 'out'
    common = ['DATASET.NAME', name, 'DATASET.ROOT', osp.join(REPO, 'dataset', folder), 'DATASET.TRAIN_ANN', ann,
              'DATASET.VAL_ANN', ann] + extra + [
        'OUTPUT_DIR', out, 'MODEL.PRETRAINED', 'None', 'DATALOADER.NUM_WORKERS', 0,
        'TEST.USE_GT_BBOX', 'True'] + SMALL['COCO']
    log = run_script(EXP, 'train.py', ['SOLVER.MAX_ITER', 2, 'SOLVER.IMS_PER_GPU', 2, 'SOLVER.WARMUP_ITERS', 1,
                                       'SOLVER.CHECKPOINT_PERIOD', 2, 'SOLVER.REFERENCE_WORLD_SIZE', 'None']
                     + common)
    assert 'Iter: 2/2' in log
    config = json.loads((out / 'config.json').read_text())
    assert config['DATASET']['KEYPOINT']['NUM'] == num_kp == config['MODEL']['OUTPUT_NUM']
    run_script(EXP, 'test.py', ['-i', 2] + common)
    results = json.loads((out / 'test_dir' / 'results.json').read_text())
    metrics = json.loads((out / 'test_dir' / 'metrics.json').read_text())['metrics']
    assert all(len(r['keypoints']) == 3 * num_kp for r in results)
    # GT boxes: one instance per labelled person (PoseTrack: fewer if a centre falls in an ignore region)
    assert 0 < len(results) <= people and (name == 'POSETRACK18' or len(results) == people)
    assert 0.0 <= metrics['AP'] <= 1.0
    if name == 'CROWDPOSE':
        assert metrics['AP_easy'] == metrics['AP_hard'] == -1.0 and 0.0 <= metrics['AP_medium'] <= 1.0


@pytest.mark.slow
def test_user_metadata_file_trains_and_tests(tmp_path):
    """A keypoint set of one's own (here AIC's, under another name, from a JSON file) through DATASET.META_FILE."""
    from cvpack.data.meta import AIC
    meta = dict(name='MY_AIC', keypoint_names=list(AIC.keypoint_names), flip_pairs=[list(p) for p in AIC.flip_pairs],
                skeleton=[list(p) for p in AIC.skeleton], sigmas=list(AIC.sigmas),
                upper_body_ids=list(AIC.upper_body_ids), lower_body_ids=list(AIC.lower_body_ids),
                extra={'fill_area': True})
    meta_file = tmp_path / 'my_aic.json'
    meta_file.write_text(json.dumps(meta))
    out = tmp_path / 'out'
    root = osp.join(REPO, 'dataset', 'aic_subset')
    common = ['DATASET.META_FILE', meta_file, 'DATASET.ROOT', root, 'DATASET.TRAIN_ANN', 'annotations/test_aic.json',
              'DATASET.VAL_ANN', 'annotations/test_aic.json', 'OUTPUT_DIR', out, 'MODEL.PRETRAINED', 'None',
              'DATALOADER.NUM_WORKERS', 0, 'TEST.USE_GT_BBOX', 'True'] + SMALL['COCO']
    run_script(EXP, 'train.py', ['SOLVER.MAX_ITER', 2, 'SOLVER.IMS_PER_GPU', 2, 'SOLVER.WARMUP_ITERS', 1,
                                 'SOLVER.CHECKPOINT_PERIOD', 2, 'SOLVER.REFERENCE_WORLD_SIZE', 'None'] + common)
    config = json.loads((out / 'config.json').read_text())
    assert config['DATASET']['NAME'] == 'MY_AIC' and config['DATASET']['KEYPOINT']['NUM'] == 14
    assert config['DATASET']['TRAIN_IMAGES'] == 'images'        # a user dataset's default layout
    run_script(EXP, 'test.py', ['-i', 2] + common)
    results = json.loads((out / 'test_dir' / 'results.json').read_text())
    assert len(results) == 9 and all(len(r['keypoints']) == 42 for r in results)


def test_ochuman_has_no_train_split(tmp_path):
    from cvpack.config import merge_from_list
    from cvpack.config.megvii import megvii_config
    from cvpack.data import build_dataset
    cfg = merge_from_list(megvii_config(str(tmp_path), dataset='COCO'), ['DATASET.NAME', 'OCHUMAN'])
    with pytest.raises(ValueError, match='OCHUMAN has no train split: set DATASET.TRAIN_ANN'):
        build_dataset(cfg, 'train')
