"""COCO evaluation: pycocotools parity, GT as predictions, validation errors, CLI, build_evaluator."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from easydict import EasyDict as edict

from cvpack.evaluation import STAT_NAMES, build_evaluator, evaluate_keypoints
from cvpack.evaluation.coco import load_coco_gt

PEERS = ['mediapipe_mc0', 'mediapipe_mc1', 'mediapipe_mc2', 'movenet_lightning', 'movenet_thunder']


@pytest.fixture(scope='module')
def gt_path(coco_subset):
    return os.path.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')


@pytest.fixture(scope='module')
def coco_gt(gt_path):
    return load_coco_gt(gt_path)


def _peer(repo_root, name):
    return os.path.join(repo_root, 'tests', 'data', 'peer_predictions',
                        'coco_val2017_subset_%s_keypoints_results.json' % name)


def _gt_as_results(gt_path):
    with open(gt_path) as f:
        anns = json.load(f)['annotations']
    return [{'image_id': a['image_id'], 'category_id': 1, 'keypoints': a['keypoints'], 'score': 1.0,
             'area': a['area'], 'bbox': a['bbox']}
            for a in anns if not a['iscrowd'] and a['num_keypoints'] > 0]


@pytest.mark.parametrize('name', PEERS)
def test_matches_recorded_pycocotools_stats(repo_root, coco_gt, name):
    with open(os.path.join(repo_root, 'tests', 'data', 'peer_predictions', 'pycocotools_stats.json')) as f:
        expected = json.load(f)[name]
    stats = evaluate_keypoints(coco_gt, _peer(repo_root, name))
    assert list(stats) == list(STAT_NAMES)
    np.testing.assert_allclose([stats[k] for k in STAT_NAMES], expected, atol=5e-5 + 1e-9)


def test_gt_as_predictions_is_perfect(coco_gt, gt_path):
    stats = evaluate_keypoints(coco_gt, _gt_as_results(gt_path))
    assert all(v == pytest.approx(1.0) for v in stats.values())


def test_empty_results_give_zeros(coco_gt):
    assert evaluate_keypoints(coco_gt, []) == {k: 0.0 for k in STAT_NAMES}


@pytest.mark.parametrize('corrupt,message', [
    (lambda r: r['keypoints'].__setitem__(4, float('nan')), 'NaN'),
    (lambda r: r.pop('score'), 'lacks field.*score'),
    (lambda r: r.__setitem__('image_id', 123456789), 'image_id 123456789'),
    (lambda r: r.__setitem__('keypoints', r['keypoints'][:-3]), 'has 48 values, expected 51'),
    (lambda r: r.__setitem__('score', float('inf')), 'not a finite number'),
    (lambda r: r.__setitem__('category_id', 2), 'category_id 2'),
])
def test_bad_results_name_file_and_record(tmp_path, coco_gt, gt_path, corrupt, message):
    results = _gt_as_results(gt_path)[:5]
    corrupt(results[3])
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(results, allow_nan=True))
    with pytest.raises(ValueError, match='bad.json: record 3.*' + message):
        evaluate_keypoints(coco_gt, str(path))


def test_cli_json_prints_one_object(repo_root, gt_path):
    env = dict(os.environ, PYTHONPATH=repo_root)
    cmd = [sys.executable, '-m', 'cvpack.evaluation', gt_path, _peer(repo_root, 'movenet_thunder'), '--json']
    out = subprocess.run(cmd,
                         capture_output=True, text=True, env=env, cwd=repo_root, check=True).stdout
    stats = json.loads(out)
    assert list(stats) == list(STAT_NAMES)
    assert stats['AP'] == pytest.approx(0.5043, abs=5e-5)
    assert stats['ARm'] == pytest.approx(10 / 19)              # full precision, not rounded
    bad = subprocess.run([sys.executable, '-m', 'cvpack.evaluation', gt_path, '/nonexistent.json', '--json'],
                         capture_output=True, text=True, env=env, cwd=repo_root)
    assert bad.returncode == 2 and 'not found: /nonexistent.json' in bad.stderr and bad.stdout == ''


def test_build_evaluator_nms_and_results_file(tmp_path, coco_subset, gt_path):
    cfg = edict(DATASET=edict(NAME='COCO', ROOT=coco_subset, VAL_ANN='annotations/person_keypoints_val2017.json',
                              META_FILE=''),
                TEST=edict(NMS='oks', NMS_THRESH=0.9, USE_GT_BBOX=True, EVALUATOR=''))
    instances = []
    for r in _gt_as_results(gt_path):
        kps = np.asarray(r['keypoints'], np.float64).reshape(17, 3)
        # unlabelled joints sit at (0, 0) in the GT; at (0, 0) two people would match there, so put them
        # at the person's box centre (evaluation ignores them either way)
        x, y, w, h = r['bbox']
        kps[kps[:, 2] == 0, :2] = (x + w / 2, y + h / 2)
        instances.append(dict(r, keypoints=kps))
        # a duplicate 1 px away with a lower score: OKS ~1 > 0.9, so OKS-NMS must remove it
        instances.append(dict(r, keypoints=kps + [1.0, 0.0, 0.0], score=0.5))
    stats = build_evaluator(cfg)(instances, str(tmp_path))
    assert stats['AP'] == pytest.approx(1.0)
    with open(tmp_path / 'results.json') as f:
        written = json.load(f)
    assert len(written) == len(instances) // 2 and all(len(r['keypoints']) == 51 for r in written)
    cfg.TEST.NMS = 'none'
    build_evaluator(cfg)(instances, str(tmp_path))
    with open(tmp_path / 'results.json') as f:
        assert len(json.load(f)) == len(instances)


def test_custom_sigmas(coco_gt, repo_root):
    path = _peer(repo_root, 'movenet_thunder')
    from cvpack.data.meta import oks_sigmas
    same = evaluate_keypoints(coco_gt, path, sigmas=oks_sigmas('COCO'))
    assert same['AP'] == pytest.approx(evaluate_keypoints(coco_gt, path)['AP'])
    looser = evaluate_keypoints(coco_gt, path, sigmas=2 * oks_sigmas('COCO'))
    assert looser['AP'] > same['AP']                   # larger sigmas -> higher OKS -> higher AP
    with pytest.raises(ValueError, match='16 OKS sigmas for 17'):
        evaluate_keypoints(coco_gt, path, sigmas=np.ones(16))


@pytest.mark.parametrize('value,message', [
    (float('nan'), r'sigmas\[3\] is nan, not a finite number'),
    (float('inf'), r'sigmas\[3\] is inf, not a finite number'),
    (0.0, r'sigmas\[3\] is 0, not > 0'),
    (-0.035, r'sigmas\[3\] is -0.035, not > 0'),
])
def test_non_finite_or_non_positive_sigmas_are_an_error(coco_gt, repo_root, value, message):
    """One NaN sigma made every OKS NaN, which pycocotools counts as a match: AP 0.1789 -> 0.6947 for the shipped
    mediapipe results, silently; 0 divided by zero (AP 0.1527), a negative sigma was squared away."""
    from cvpack.data.meta import oks_sigmas
    path = _peer(repo_root, 'mediapipe_mc0')
    sigmas = np.array(oks_sigmas('COCO'))
    assert evaluate_keypoints(coco_gt, path, sigmas=sigmas)['AP'] == pytest.approx(0.1789, abs=5e-5)
    sigmas[3] = value
    with pytest.raises(ValueError, match='OKS sigmas: ' + message):
        evaluate_keypoints(coco_gt, path, sigmas=sigmas)
