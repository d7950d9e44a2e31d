"""Combined training (DATASET.COMBINE): COCO + AIC mapped into COCO-17, weighted, reproducible, resumable."""
import json
import os.path as osp

import numpy as np
import pytest

from cvpack.config import merge_from_list
from cvpack.config.megvii import megvii_config
from cvpack.data import build_dataset
from cvpack.data.combined import keypoint_mapping
from cvpack.data.meta import AIC, COCO
from cvpack.data.samplers import IterationBasedSampler, WeightedSourceDraw
from tests.projects.megvii_helpers import SMALL
from tests.projects.scripts import REPO, run_script


def _combine(repo_root, coco_w=3.0, aic_w=1.0):
    return [dict(NAME='COCO', ROOT=osp.join(repo_root, 'dataset', 'coco_subset'), IMAGES='images/train2017',
                 ANN='annotations/person_keypoints_train2017.json', WEIGHT=coco_w),
            dict(NAME='AIC', ROOT=osp.join(repo_root, 'dataset', 'aic_subset'), IMAGES='images',
                 ANN='annotations/test_aic.json', WEIGHT=aic_w)]


def test_aic_to_coco_mapping_by_name(repo_root, tmp_path):
    mapping = keypoint_mapping(AIC, COCO)
    # nose, eyes, ears: not in AIC; shoulders .. ankles: AIC's right/left order
    assert mapping == [-1, -1, -1, -1, -1, 3, 0, 4, 1, 5, 2, 9, 6, 10, 7, 11, 8]
    cfg = merge_from_list(megvii_config(str(tmp_path), dataset='COCO'),
                          ['DATASET.COMBINE', repr(_combine(repo_root))] + SMALL['COCO'])
    ds = build_dataset(cfg, 'train')
    coco, aic = ds.sources
    assert (coco['size'], aic['size']) == (86, 9) and len(ds) == 95      # 86 COCO train people, 9 AIC people
    with open(osp.join(repo_root, 'dataset', 'aic_subset', 'annotations', 'test_aic.json')) as f:
        first = json.load(f)['annotations'][0]                          # id 4, image 1
    src = np.asarray(first['keypoints'], np.float32).reshape(14, 3)
    rec = next(r for r in ds.records[aic['offset']:] if r['ann_id'] == first['id'])
    assert np.array_equal(rec['joints'][6], src[0]) and np.array_equal(rec['joints'][5], src[3])   # shoulders
    assert np.array_equal(rec['joints'][16], src[8]) and not rec['joints'][:5].any()              # ankle; head
    sample = ds[aic['offset']]
    assert tuple(sample['target_weight'].shape)[0] == 17


def test_weighted_draw_reproducible_and_resumable():
    draw = WeightedSourceDraw([86, 9], [3.0, 1.0])
    sampler = IterationBasedSampler(95, 4, 500, seed=7, rank=0, world_size=1)
    full = [draw(i.key) for batch in sampler for i in batch]
    assert full == [draw(i.key) for batch in sampler for i in batch]          # same seed: same mix
    share = np.mean([d == 0 for d, _ in full])
    assert abs(share - 0.75) < 0.03                                          # 2000 draws, weight 3:1
    assert {i for d, i in full if d == 1} == set(range(9))                   # every AIC person is reached
    resumed = IterationBasedSampler(95, 4, 500, start_iter=321, seed=7, rank=0, world_size=1)
    assert [draw(i.key) for batch in resumed for i in batch] == full[321 * 4:]
    other = IterationBasedSampler(95, 4, 500, seed=8, rank=0, world_size=1)
    assert [draw(i.key) for batch in other for i in batch] != full
    with pytest.raises(ValueError, match='weights must be finite'):
        WeightedSourceDraw([3, 4], [1.0, -1.0])


def test_bad_combine_entry_is_named(repo_root, tmp_path):
    bad = _combine(repo_root)
    bad[1]['MAP'] = [0] * 16
    cfg = merge_from_list(megvii_config(str(tmp_path), dataset='COCO'), ['DATASET.COMBINE', repr(bad)])
    with pytest.raises(ValueError, match=r'DATASET.COMBINE\[1\]: MAP must list, for each of the 17 COCO'):
        build_dataset(cfg, 'train')


@pytest.mark.slow
def test_combined_training_runs_and_resumes(repo_root, tmp_path):
    exp = osp.join(REPO, 'projects', 'RSN', 'exps', 'RSN18.coco')
    out = tmp_path / 'out'
    common = ['DATASET.COMBINE', repr(_combine(repo_root, 1.0, 1.0)), 'OUTPUT_DIR', out, 'MODEL.PRETRAINED',
              'None', 'DATALOADER.NUM_WORKERS', 0, 'SOLVER.IMS_PER_GPU', 2, 'SOLVER.WARMUP_ITERS', 1,
              'SOLVER.CHECKPOINT_PERIOD', 1, 'SOLVER.REFERENCE_WORLD_SIZE', 'None'] + SMALL['COCO']
    log = run_script(exp, 'train.py', ['SOLVER.MAX_ITER', 2] + common)
    assert 'combined training: COCO 86 records weight 1, AIC 9 records weight 1' in log and 'Iter: 2/2' in log
    log = run_script(exp, 'train.py', ['SOLVER.MAX_ITER', 3] + common)   # auto-resume from iter-last.pth
    assert 'resumed from' in log and 'Iter: 3/3' in log
