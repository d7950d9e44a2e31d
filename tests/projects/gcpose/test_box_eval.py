"""GCPose's person box AP: pycocotools' printing goes to the log (stdout stays clean), results are written
atomically."""
import json
import logging
import os.path as osp

import pytest

from projects.GCPose.gcpose.evaluator import evaluate_boxes


@pytest.fixture
def gt_and_dets(tmp_path, coco_subset):
    with open('%s/annotations/person_keypoints_val2017.json' % coco_subset) as f:
        data = json.load(f)
    data['images'] = data['images'][:3]
    ids = {i['id'] for i in data['images']}
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in ids and not a['iscrowd']]
    gt = tmp_path / 'gt.json'
    gt.write_text(json.dumps(data))
    dets = [{'image_id': a['image_id'], 'bbox': a['bbox'], 'score': 0.9} for a in data['annotations']]
    return str(gt), dets


def test_box_ap_logged_not_printed(gt_and_dets, tmp_path, capsys, log_capture):
    gt, dets = gt_and_dets
    with log_capture.at_level(logging.INFO, logger='projects.GCPose'):
        metrics = evaluate_boxes(gt, dets, str(tmp_path))
    assert metrics['AP'] == pytest.approx(1.0)
    assert capsys.readouterr().out == ''
    text = '\n'.join(r.getMessage() for r in log_capture.records if r.name.startswith('projects.GCPose'))
    assert 'person box AP (pycocotools, %s)' % gt in text
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000' in text
    written = json.loads((tmp_path / 'bbox_results.json').read_text())
    assert len(written) == len(dets) and written[0]['category_id'] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bbox_results.json', 'gt.json']   # no temporary left


def test_box_results_written_atomically(gt_and_dets, tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous bbox_results.json whole (it was truncated before)."""
    gt, dets = gt_and_dets
    evaluate_boxes(gt, dets, str(tmp_path))
    before = (tmp_path / 'bbox_results.json').read_text()
    import cvpack.evaluation.build as build

    def dump_then_fail(obj, f):
        f.write('[{"image_id": ')
        raise OSError('disk full')
    monkeypatch.setattr(build.json, 'dump', dump_then_fail)
    with pytest.raises(OSError, match='disk full'):
        evaluate_boxes(gt, dets[:1], str(tmp_path))
    assert (tmp_path / 'bbox_results.json').read_text() == before
    assert not (tmp_path / 'bbox_results.json.tmp').exists()


def test_no_detections_score_zero_not_crash(gt_and_dets, tmp_path, log_capture):
    """No detection at all: every box metric is 0 (pycocotools' loadRes fails on an empty list; returning {}
    lost box_AP, which TEST.BEST_METRIC may name). An empty bbox_results.json is still written."""
    gt, _ = gt_and_dets
    with log_capture.at_level(logging.WARNING, logger='projects.GCPose'):
        metrics = evaluate_boxes(gt, [], str(tmp_path))
    assert metrics == {'AP': 0.0, 'AP50': 0.0, 'AP75': 0.0, 'APs': 0.0, 'APm': 0.0, 'APl': 0.0}
    assert 'no detections; every box metric is 0' in log_capture.text
    assert json.loads((tmp_path / 'bbox_results.json').read_text()) == []


def test_no_detection_in_the_scored_images_is_zero(gt_and_dets, tmp_path):
    """Detections only on an image outside ``image_ids`` (TEST.MAX_IMAGES): pycocotools scores 0 (not NaN / -1)
    for the areas that have ground truth."""
    gt, dets = gt_and_dets
    first = dets[0]['image_id']
    others = sorted({d['image_id'] for d in dets} - {first})
    metrics = evaluate_boxes(gt, [d for d in dets if d['image_id'] == first], str(tmp_path), image_ids=others)
    assert metrics['AP'] == 0.0 and metrics['AP50'] == 0.0


def test_detection_evaluator_declares_its_metrics(repo_root, coco_subset, tmp_path):
    """DetectionEvaluator.metric_names() (cvpack.protocols.MetricNames) are exactly the numbers it returns, also
    with no instance at all (every one 0)."""
    from cvpack.evaluation.build import CocoEvaluator
    from cvpack.exp import load_exp
    from cvpack.protocols import MetricNames
    from projects.GCPose.gcpose.evaluator import DetectionEvaluator
    exp = osp.join(repo_root, 'projects', 'GCPose', 'exps', 'keypoint_rcnn.R50.coco')
    cfg, _ = load_exp(exp, build=False, opts=['DATASET.ROOT', coco_subset])
    ev = DetectionEvaluator(cfg)
    assert isinstance(ev, MetricNames) and issubclass(CocoEvaluator, MetricNames)
    metrics = ev([], str(tmp_path))
    assert ev.metric_names() == list(metrics)
    assert ev.metric_names()[-6:] == ['box_AP', 'box_AP50', 'box_AP75', 'box_APs', 'box_APm', 'box_APl']
    assert set(metrics.values()) == {0.0}


def test_keypoint_results_carry_boxes_for_the_area_ranges(tmp_path, coco_subset):
    """Detectron2's COCOEvaluator writes each keypoint result with its detection 'bbox', so pycocotools' loadRes
    takes the detection's area from the box: an unmatched detection with a medium box but tightly clustered
    keypoints is a false positive of APm (0.5 here); from the keypoints' extent (small) it was ignored (APm 1)."""
    import numpy as np
    from projects.GCPose.gcpose.evaluator import DetectionEvaluator
    from projects.GCPose.gcpose.preset import detection_config
    with open('%s/annotations/person_keypoints_val2017.json' % coco_subset) as f:
        data = json.load(f)
    img = data['images'][0]
    kps = [[100 + 3 * i, 100 + 4 * i, 2] for i in range(17)]
    data['images'] = [img]
    data['annotations'] = [{'id': 1, 'image_id': img['id'], 'category_id': 1, 'iscrowd': 0, 'area': 3000.0,
                            'bbox': [95.0, 95.0, 60.0, 75.0], 'num_keypoints': 17,
                            'keypoints': [v for k in kps for v in k]}]
    gt = tmp_path / 'gt.json'
    gt.write_text(json.dumps(data))
    match = np.asarray(kps, np.float32)
    match[:, 2] = 1
    clustered = match.copy()
    clustered[:, 0], clustered[:, 1] = 300 + np.arange(17) % 3, 300 + np.arange(17) % 4   # 2 x 3 px extent
    instances = [{'image_id': img['id'], 'category_id': 1, 'keypoints': clustered, 'score': 0.9,
                  'bbox': [280.0, 280.0, 60.0, 60.0]},                                   # medium box, 3600 px
                 {'image_id': img['id'], 'category_id': 1, 'keypoints': match, 'score': 0.5,
                  'bbox': [95.0, 95.0, 60.0, 75.0]}]
    cfg = detection_config(str(tmp_path / 'exp'))
    cfg.DATASET.ROOT = coco_subset
    cfg.DATASET.VAL_ANN = str(gt)
    metrics = DetectionEvaluator(cfg)(instances, str(tmp_path))
    with open(tmp_path / 'results.json') as f:
        written = json.load(f)
    assert [r['bbox'] for r in written] == [[280.0, 280.0, 60.0, 60.0], [95.0, 95.0, 60.0, 75.0]]
    assert metrics['AP'] == pytest.approx(0.5, abs=0.01) and metrics['APm'] == pytest.approx(0.5, abs=0.01)
