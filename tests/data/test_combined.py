"""Combined training (DATASET.COMBINE): COCO + AIC mapped into COCO-17, weighted, reproducible, resumable."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from cvpack.config import ConfigError, merge_from_list
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


def _resolve(tmp_path, combine):
    """The config of an exp whose config.py sets DATASET.COMBINE (NaN has no command-line spelling)."""
    cfg = megvii_config(str(tmp_path), dataset='COCO')
    cfg.DATASET.COMBINE = combine
    return merge_from_list(cfg, [])


_NAN = float('nan')


@pytest.mark.parametrize('source, change, message', [
    (1, dict(MAP=[0] * 16), r'DATASET.COMBINE\[1\].MAP has 16 entries, expected 17: for each COCO keypoint, a AIC '
                            r'joint \(index or name\) or -1'),
    (1, dict(MAP=[-1] * 5 + [14] + [-1] * 11), r'DATASET.COMBINE\[1\].MAP\[5\]: joint 14 is out of range: AIC has '
                                               r'14 keypoints \(0..13\)'),
    (1, dict(MAP=[-1] * 5 + ['left_eye'] + [-1] * 11), r"DATASET.COMBINE\[1\].MAP\[5\]: 'left_eye' is not a AIC "
                                                       r"keypoint \(Right Shoulder, "),
    (1, dict(MAP=[-1] * 5 + [True] + [-1] * 11), r'DATASET.COMBINE\[1\].MAP\[5\]: True is neither a AIC joint'),
    (1, dict(MAP=[-1] * 17), r'DATASET.COMBINE\[1\]: AIC covers 0 of the 17 COCO keypoints; give MAP'),
    (1, dict(MAP={'left_eye': 'Head top', 'tail': 0}), r"DATASET.COMBINE\[1\].MAP\['tail'\] \(COCO side\): 'tail' is "
                                                       r"not a COCO keypoint"),
    (1, dict(MAP={'nose': 'snout'}), r"DATASET.COMBINE\[1\].MAP\['nose'\]: 'snout' is not a AIC keypoint"),
    (1, dict(MAP={'left_eye': 14}), r"DATASET.COMBINE\[1\].MAP\['left_eye'\]: joint 14 is out of range: AIC has 14"),
    (1, dict(MAP={'nose': 12, 'Nose': 13}), r"DATASET.COMBINE\[1\].MAP\['Nose'\]: target joint 0 \(nose\) is "
                                            r"mapped twice"),
    (1, dict(MAP={'nose': None}), r'DATASET.COMBINE\[1\]: AIC covers 0 of the 17 COCO keypoints'),
    (1, dict(MAP='auto'), r'DATASET.COMBINE\[1\].MAP must be a list or a dict, got str'),
    (0, dict(WEIGHT=0), r'DATASET.COMBINE\[0\].WEIGHT = 0 must be a finite number > 0'),
    (0, dict(WEIGHT=-2.0), r'DATASET.COMBINE\[0\].WEIGHT = -2.0 must be a finite number > 0'),
    (1, dict(WEIGHT=_NAN), r'DATASET.COMBINE\[1\].WEIGHT = nan must be a finite number > 0'),
    (1, dict(WEIGHT=float('inf')), r'DATASET.COMBINE\[1\].WEIGHT = inf must be'),
    (1, dict(WEIGHT='2'), r"DATASET.COMBINE\[1\].WEIGHT = '2' must be"),
    (1, dict(WEIGHT=True), r'DATASET.COMBINE\[1\].WEIGHT = True must be'),
    (1, dict(NAME='coco', ROOT=osp.join(REPO, 'dataset', 'coco_subset'), ANN='annotations/../annotations/'
             'person_keypoints_train2017.json'), r"DATASET.COMBINE\[1\].ANN = .* repeats the annotation file of "
                                                 r"DATASET.COMBINE\[0\]"),
    (1, dict(NAME='NOPE'), r"DATASET.COMBINE\[1\].NAME: unknown dataset 'NOPE'"),
    (1, dict(NAME=''), r"DATASET.COMBINE\[1\].NAME = '' must be a non-empty string"),
    (0, dict(ANN=None), r'DATASET.COMBINE\[0\].ANN = None must be a non-empty string'),
    (0, dict(WEIGTH=2.0), r"DATASET.COMBINE\[0\]: unknown 'WEIGTH' \(keys: ANN, IMAGES, MAP, META_FILE, NAME"),
    (1, dict(META_FILE='/nonexistent/meta.json'), r'DATASET.COMBINE\[1\].META_FILE: dataset metadata file '
                                                  r'/nonexistent/meta.json does not exist'),
])
def test_bad_combine_source_is_named_at_config_time(repo_root, tmp_path, source, change, message):
    bad = _combine(repo_root)
    bad[source].update(change)
    with pytest.raises(ConfigError, match=message):
        _resolve(tmp_path, bad)


def test_two_files_of_one_dataset_are_two_sources(repo_root, tmp_path):
    """COCO train2017 + val2017 (NAME picks the keypoint set, so both are 'COCO'): refused as a repeated NAME."""
    combine = _combine(repo_root)[:1] + [dict(_combine(repo_root)[0], IMAGES='images/val2017',
                                              ANN='annotations/person_keypoints_val2017.json', WEIGHT=1.0)]
    ds = build_dataset(_resolve(tmp_path, combine), 'train')
    assert [(s['name'], s['size']) for s in ds.sources] == [('COCO', 86), ('COCO', 125)] and len(ds) == 211


def test_combine_shape_errors(repo_root, tmp_path):
    missing = _combine(repo_root)
    del missing[1]['ANN']
    with pytest.raises(ConfigError, match=r'DATASET.COMBINE\[1\]: missing ANN \(keys: '):
        _resolve(tmp_path, missing)
    with pytest.raises(ConfigError, match=r"DATASET.COMBINE\[1\] must be a dict with NAME, .* got 'AIC'"):
        _resolve(tmp_path, _combine(repo_root)[:1] + ['AIC'])


def test_map_by_name_and_dict(repo_root, tmp_path):
    combine = _combine(repo_root)
    # AIC's 'Head top' as COCO's nose (a deliberate choice), shoulders by name, by index the right wrist
    combine[1]['MAP'] = {'nose': 'head top', 'Left Shoulder': 'left_shoulder', 'right_shoulder': 0, 'right_wrist': 2}
    cfg = _resolve(tmp_path, combine)
    ds = build_dataset(cfg, 'train')
    assert ds.sources[1]['mapping'] == [12, -1, -1, -1, -1, 3, 0, -1, -1, -1, 2] + [-1] * 6
    combine[1]['MAP'] = ['Head top'] + [-1] * 16
    assert build_dataset(_resolve(tmp_path, combine), 'train').sources[1]['mapping'] == [12] + [-1] * 16


def test_missing_files_named_with_source_and_key(repo_root, tmp_path):
    combine = _combine(repo_root)
    combine[0]['IMAGES'] = 'images/nope'
    combine[1]['ANN'] = 'annotations/nope.json'
    cfg = _resolve(tmp_path, combine)      # files are checked at build time, not when the config resolves
    with pytest.raises(FileNotFoundError, match=r'DATASET.COMBINE\[0\].IMAGES: image folder .*coco_subset/images/'
                                                r'nope does not exist; DATASET.COMBINE\[1\].ANN: annotation file '
                                                r'.*aic_subset/annotations/nope.json does not exist'):
        build_dataset(cfg, 'train')


def test_bad_combine_stops_train_py_with_exit_2(repo_root, tmp_path):
    text = repr(_combine(repo_root, aic_w=1.0)).replace("'WEIGHT': 1.0}", "'WEIGHT': 1e999}")   # inf in the list
    exp = osp.join(REPO, 'projects', 'RSN', 'exps', 'RSN18.coco')
    proc = subprocess.run([sys.executable, osp.join(exp, 'train.py'), 'DATASET.COMBINE', text,
                           'OUTPUT_DIR', str(tmp_path / 'out')], cwd=exp, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'DATASET.COMBINE[1].WEIGHT = inf must be a finite number > 0' in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'out').exists()


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
