"""COCO-style metrics of CrowdPose / OCHuman / AIC / PoseTrack18 through the evaluator test.py uses, proven
against an independent computation: OKS by hand (numpy, the dataset's sigmas) for a one-person ground truth,
where pycocotools' AP must be the share of the thresholds .50:.05:.95 that the OKS reaches."""
import copy
import json
import os.path as osp

import cv2
import numpy as np
import pytest
from easydict import EasyDict as edict

from cvpack.data.meta import get_dataset_meta
from cvpack.evaluation.build import build_evaluator
from cvpack.evaluation.datasets import crowd_index_split

SUBSETS = {'CROWDPOSE': ('crowdpose_subset', 'test_crowdpose.json'),
           'OCHUMAN': ('ochuman_subset', 'test_ochuman.json'),
           'AIC': ('aic_subset', 'test_aic.json'),
           'POSETRACK18': ('posetrack18_subset', 'test_posetrack18_val.json')}
THRESHOLDS = np.linspace(.5, .95, 10)


def _gt(repo_root, name):
    folder, ann = SUBSETS[name]
    with open(osp.join(repo_root, 'dataset', folder, 'annotations', ann)) as f:
        return json.load(f)


def _cfg(name, root, ann):
    return edict(DATASET=edict(NAME=name, ROOT=str(root), VAL_ANN=ann, META_FILE=''),
                 TEST=edict(NMS='none', NMS_THRESH=0.9, EVALUATOR='', USE_GT_BBOX=False))


def _hand_oks(gt_kps, pred_kps, area, sigmas):
    """COCO's OKS written out: mean over labelled joints of exp(-d^2 / (2 * area * (2 sigma)^2))."""
    g = np.asarray(gt_kps, np.float64).reshape(-1, 3)
    p = np.asarray(pred_kps, np.float64).reshape(-1, 3)
    vis = g[:, 2] > 0
    d2 = ((g[:, :2] - p[:, :2]) ** 2).sum(1)
    e = d2 / (2 * area * (2 * np.asarray(sigmas)) ** 2)
    return float(np.exp(-e)[vis].mean())


def _one_person(data):
    """The GT reduced to its annotation with most labelled joints (and its image)."""
    ann = max(data['annotations'], key=lambda a: a['num_keypoints'])
    out = copy.deepcopy(data)
    out['annotations'] = [ann]
    out['images'] = [i for i in data['images'] if i['id'] == ann['image_id']]
    return out, ann


def _inst(ann, shift, score=1.0):
    kps = np.asarray(ann['keypoints'], np.float64).reshape(-1, 3).copy()
    kps[:, 0] += shift
    kps[:, 2] = 1.0
    return dict(image_id=ann['image_id'], keypoints=kps, score=score, bbox=ann['bbox'])


@pytest.mark.parametrize('name', sorted(SUBSETS))
def test_ap_matches_hand_oks(tmp_path, repo_root, name):
    meta = get_dataset_meta(name)
    data, ann = _one_person(_gt(repo_root, name))
    (tmp_path / 'gt.json').write_text(json.dumps(data))
    area = ann['area'] if 'area' in ann else ann['bbox'][2] * ann['bbox'][3]   # CrowdPose / PoseTrack: no area
    evaluator = build_evaluator(_cfg(name, tmp_path, 'gt.json'))
    seen = set()
    for frac in (0.0, 0.005, 0.02, 0.05, 0.1):
        shift = frac * np.sqrt(area)       # pixels, relative to the person's size
        oks = _hand_oks(ann['keypoints'], _inst(ann, shift)['keypoints'], area, meta.sigmas)
        expected = float(np.mean(oks >= THRESHOLDS))
        stats = evaluator([_inst(ann, shift)], str(tmp_path / ('out%g' % shift)))
        assert stats['AP'] == pytest.approx(expected, abs=1e-9), (shift, oks)
        seen.add(expected)
    assert len(seen) >= 2           # the shifts reach different AP levels: the sigmas matter
    # the dataset's sigmas, not COCO's, decide (AIC's are 2-5x smaller than COCO's)
    if name == 'AIC':
        shifted = _inst(ann, 0.02 * np.sqrt(area))['keypoints']
        coco_oks = _hand_oks(ann['keypoints'], shifted, area, get_dataset_meta('COCO').sigmas[3:])
        aic_oks = _hand_oks(ann['keypoints'], shifted, area, meta.sigmas)
        assert aic_oks < coco_oks


def test_crowdpose_split_by_crowd_index(tmp_path, repo_root):
    data = _gt(repo_root, 'CROWDPOSE')
    # by hand: the shipped images have crowdIndex 0.33 and 0.39, both "medium" (0.1 <= ci < 0.8)
    assert {i['id']: i['crowdIndex'] for i in data['images']} == {106848: 0.33, 103319: 0.39}
    assert crowd_index_split(data['images']) == {'easy': [], 'medium': [106848, 103319], 'hard': []}
    # one person per image, image 106848 made easy (0.05), 103319 hard (0.85)
    keep = {}
    for a in data['annotations']:
        if a['num_keypoints'] > keep.get(a['image_id'], {'num_keypoints': -1})['num_keypoints']:
            keep[a['image_id']] = a
    data['annotations'] = list(keep.values())
    for img in data['images']:
        img['crowdIndex'] = 0.05 if img['id'] == 106848 else 0.85
    (tmp_path / 'gt.json').write_text(json.dumps(data))
    easy, hard = keep[106848], keep[103319]
    meta = get_dataset_meta('CROWDPOSE')
    shift = 0.1 * np.sqrt(hard['bbox'][2] * hard['bbox'][3])
    oks = _hand_oks(hard['keypoints'], _inst(hard, shift)['keypoints'], hard['bbox'][2] * hard['bbox'][3],
                    meta.sigmas)
    evaluator = build_evaluator(_cfg('CROWDPOSE', tmp_path, 'gt.json'))
    stats = evaluator([_inst(easy, 0.0), _inst(hard, shift)], str(tmp_path / 'out'))
    assert evaluator.metric_names() == list(stats)   # declared up front (TEST.BEST_METRIC is checked against them)
    assert evaluator.metric_names()[-3:] == ['AP_easy', 'AP_medium', 'AP_hard']
    assert stats['AP_easy'] == pytest.approx(1.0)
    assert stats['AP_hard'] == pytest.approx(float(np.mean(oks >= THRESHOLDS)), abs=1e-9)
    assert 0.0 < stats['AP_hard'] < 0.99             # the shift costs some thresholds
    assert stats['AP_medium'] == -1.0          # no image in that split


def test_posetrack_ignore_regions(tmp_path, repo_root):
    data, ann = _one_person(_gt(repo_root, 'POSETRACK18'))
    img = data['images'][0]
    (tmp_path / 'gt.json').write_text(json.dumps(data))
    # a point inside an ignore polygon, checked independently with OpenCV
    poly = np.stack([img['ignore_regions_x'][0], img['ignore_regions_y'][0]], 1).astype(np.float32)
    inside = None
    ys, xs = np.mgrid[0:img['height']:16, 0:img['width']:16]
    for x, y in zip(xs.ravel(), ys.ravel()):
        if cv2.pointPolygonTest(poly, (float(x), float(y)), False) > 0 and \
                all(cv2.pointPolygonTest(poly, (float(x + dx), float(y + dy)), False) > 0
                    for dx in (-8, 8) for dy in (-8, 8)):
            inside = (float(x), float(y))
            break
    assert inside is not None
    ghost = np.zeros((17, 3))
    ghost[:, 0], ghost[:, 1], ghost[:, 2] = inside[0], inside[1], 1.0
    fp_in = dict(image_id=ann['image_id'], keypoints=ghost, score=2.0, bbox=[inside[0], inside[1], 1, 1])
    evaluator = build_evaluator(_cfg('POSETRACK18', tmp_path, 'gt.json'))
    # a higher-scored false positive halves the precision at recall 1 unless it is dropped as ignored
    assert evaluator([_inst(ann, 0.0), fp_in], str(tmp_path / 'a'))['AP'] == pytest.approx(1.0)
    far = dict(fp_in, keypoints=np.concatenate([ghost[:, :2] * 0 + [[-500.0, -500.0]], ghost[:, 2:]], 1))
    assert evaluator([_inst(ann, 0.0), far], str(tmp_path / 'b'))['AP'] == pytest.approx(0.5)


def test_cli_uses_the_dataset_sigmas(tmp_path, repo_root, capsys):
    from cvpack.evaluation.__main__ import main
    data, ann = _one_person(_gt(repo_root, 'AIC'))
    gt = tmp_path / 'gt.json'
    gt.write_text(json.dumps(data))
    area = ann['bbox'][2] * ann['bbox'][3]
    inst = _inst(ann, 0.02 * np.sqrt(area))
    res = tmp_path / 'res.json'
    res.write_text(json.dumps([dict(image_id=ann['image_id'], category_id=1, score=1.0,
                                    keypoints=[float(v) for v in inst['keypoints'].ravel()])]))
    assert main([str(gt), str(res), '--dataset', 'AIC', '--json']) == 0
    oks = _hand_oks(ann['keypoints'], inst['keypoints'], area, get_dataset_meta('AIC').sigmas)
    assert json.loads(capsys.readouterr().out)['AP'] == pytest.approx(float(np.mean(oks >= THRESHOLDS)))
    assert main([str(gt), str(res), '--json']) == 2          # no --dataset: AIC's missing area is not filled
    assert 'annotation id %d has no area' % ann['id'] in capsys.readouterr().err
    data['annotations'][0]['area'] = area
    gt.write_text(json.dumps(data))
    assert main([str(gt), str(res), '--json']) == 2          # COCO's 17 sigmas for 14 keypoints: named error
    assert '14 keypoints in the ground truth: give the OKS sigmas' in capsys.readouterr().err
