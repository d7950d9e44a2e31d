"""COCO-style metrics of CrowdPose / OCHuman / AIC / PoseTrack18 through the evaluator test.py uses, proven
against an independent computation: OKS by hand (numpy, the dataset's sigmas) for a one-person ground truth,
where pycocotools' AP must be the share of the thresholds .50:.05:.95 that the OKS reaches; and against mmpose
1.3.2's CocoMetric (xtcocotools) on noisy results of the shipped subsets (golden numbers)."""
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
    # CrowdPose / AIC / PoseTrack18: no area in the files; crowdposetools' 0.53 * box (OCHuman has its own)
    area = ann['area'] if name == 'OCHUMAN' else ann['bbox'][3] * ann['bbox'][2] * 0.53
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
    # crowdposetools' bounds (0.2, 0.8), not the paper's 0.1: 0.15 is easy
    ci = [dict(id=n, crowdIndex=c) for n, c in enumerate((0.0, 0.15, 0.1999, 0.2, 0.7999, 0.8, 1.0))]
    assert crowd_index_split(ci) == {'easy': [0, 1, 2], 'medium': [3, 4], 'hard': [5, 6]}
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
    oks = _hand_oks(hard['keypoints'], _inst(hard, shift)['keypoints'], hard['bbox'][3] * hard['bbox'][2] * 0.53,
                    meta.sigmas)
    evaluator = build_evaluator(_cfg('CROWDPOSE', tmp_path, 'gt.json'))
    stats = evaluator([_inst(easy, 0.0), _inst(hard, shift)], str(tmp_path / 'out'))
    assert evaluator.metric_names() == list(stats)   # declared up front (TEST.BEST_METRIC is checked against them)
    assert evaluator.metric_names()[-3:] == ['AP_easy', 'AP_medium', 'AP_hard']
    assert stats['AP_easy'] == pytest.approx(1.0)
    assert stats['AP_hard'] == round(float(np.mean(oks >= THRESHOLDS)), 4)   # rounded as crowdposetools
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
    area = ann['bbox'][3] * ann['bbox'][2] * 0.53
    inst = _inst(ann, 0.02 * np.sqrt(area))
    res = tmp_path / 'res.json'
    res.write_text(json.dumps([dict(image_id=ann['image_id'], category_id=1, score=1.0,
                                    keypoints=[float(v) for v in inst['keypoints'].ravel()])]))
    assert main([str(gt), str(res), '--dataset', 'AIC', '--json']) == 0
    oks = _hand_oks(ann['keypoints'], inst['keypoints'], area, get_dataset_meta('AIC').sigmas)
    assert json.loads(capsys.readouterr().out)['AP'] == pytest.approx(float(np.mean(oks >= THRESHOLDS)))
    assert main([str(gt), str(res), '--json']) == 2          # no --dataset: AIC's missing area is not filled
    assert 'annotation id %d has no area' % ann['id'] in capsys.readouterr().err
    data['annotations'][0]['area'] = ann['bbox'][2] * ann['bbox'][3]
    gt.write_text(json.dumps(data))
    assert main([str(gt), str(res), '--json']) == 2          # COCO's 17 sigmas for 14 keypoints: named error
    assert '14 keypoints in the ground truth: give the OKS sigmas' in capsys.readouterr().err


def _noisy_results(data, seed):
    """COCO results made from the GT: each labelled person kept with probability 0.85, its joints moved by
    Gaussian noise of 0.5 % to 10 % of the box size (unlabelled joints at the labelled ones' mean), random
    scores, and a shifted duplicate for 30 % of the people."""
    rng = np.random.RandomState(seed)
    res = []
    for a in data['annotations']:
        k = np.asarray(a['keypoints'], float).reshape(-1, 3)
        if k[:, 2].max() <= 0 or rng.rand() < 0.15:
            continue
        s = np.sqrt(a['bbox'][2] * a['bbox'][3])
        sd = rng.choice([0.005, 0.02, 0.05, 0.1]) * s
        p = k.copy()
        p[k[:, 2] == 0, :2] = k[k[:, 2] > 0, :2].mean(0)
        p[:, :2] += rng.randn(len(k), 2) * sd
        p[:, 2] = rng.rand(len(k))
        res.append(dict(image_id=a['image_id'], category_id=1, keypoints=p.ravel().tolist(), score=float(rng.rand())))
        if rng.rand() < 0.3:
            q = p.copy()
            q[:, :2] += rng.randn(2) * 0.3 * s
            res.append(dict(image_id=a['image_id'], category_id=1, keypoints=q.ravel().tolist(),
                            score=float(rng.rand())))
    return res


# mmpose 1.3.2 CocoMetric._do_python_keypoint_eval on _noisy_results(gt, 1): CrowdPose with use_area=False,
# iou_type='keypoints_crowd'; AIC and PoseTrack18 with use_area=False (their files have no area); OCHuman default
MMPOSE = {
    'CROWDPOSE': dict(AP=0.6237623762376237, AP50=0.9009900990099011, AP75=0.5544554455445543, AR=0.8, AR50=1.0,
                      AR75=0.75, AP_easy=-1.0, AP_medium=0.6238, AP_hard=-1.0),
    'OCHUMAN': dict(AP=0.7736916548797734, AP50=0.7736916548797732, AP75=0.7736916548797732, APm=-1.0,
                    APl=0.7736916548797734, AR=1.0, AR50=1.0, AR75=1.0, ARm=-1.0, ARl=1.0),
    'AIC': dict(AP=0.43147689768976893, AP50=0.5544554455445546, AP75=0.37293729372937284, APm=-1.0,
                APl=0.43147689768976893, AR=0.5777777777777777, AR50=0.6666666666666666, AR75=0.5555555555555556,
                ARm=-1.0, ARl=0.5777777777777777),
    'POSETRACK18': dict(AP=0.44270980669495524, AP50=0.728076379066478, AP75=0.5133781235266385, APm=-1.0,
                        APl=0.44270980669495524, AR=0.6499999999999999, AR50=0.8571428571428571,
                        AR75=0.7142857142857143, ARm=-1.0, ARl=0.6499999999999999),
}
# the CrowdPose file with crowdIndex 0.15 (easy by crowdposetools' 0.2 bound) for 106848 and 0.85 for 103319
MMPOSE_SPLIT = dict(MMPOSE['CROWDPOSE'], AP_easy=0.835, AP_medium=-1.0, AP_hard=0.402)


def _check_mmpose(stats, expected):
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize('name', sorted(MMPOSE) + ['CROWDPOSE_SPLIT'])
def test_metrics_equal_mmpose(tmp_path, repo_root, name, capsys):
    """The evaluator test.py uses and the CLI give mmpose's numbers: the OKS area of a file without one is 0.53 *
    box (it was w * h: AP 0.728 for 0.624 on CrowdPose), CrowdPose's split at crowdIndex 0.2 / 0.8, its split APs
    rounded to 4 decimals."""
    from cvpack.evaluation.__main__ import main
    dataset = name.split('_')[0]
    data = _gt(repo_root, dataset)
    results = _noisy_results(data, 1)
    expected = MMPOSE.get(name)
    if name == 'CROWDPOSE_SPLIT':
        for img in data['images']:
            img['crowdIndex'] = 0.15 if img['id'] == 106848 else 0.85
        expected = MMPOSE_SPLIT
    (tmp_path / 'gt.json').write_text(json.dumps(data))
    insts = [dict(image_id=r['image_id'], keypoints=np.asarray(r['keypoints']).reshape(-1, 3), score=r['score'],
                  area=1.0) for r in results]
    _check_mmpose(build_evaluator(_cfg(dataset, tmp_path, 'gt.json'))(insts, str(tmp_path)), expected)
    (tmp_path / 'res.json').write_text(json.dumps(results))
    assert main([str(tmp_path / 'gt.json'), str(tmp_path / 'res.json'), '--dataset', dataset, '--json']) == 0
    _check_mmpose(json.loads(capsys.readouterr().out), expected)
