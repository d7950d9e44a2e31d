"""Bad ground truth and detections through ``build_dataset`` (the loaders every train.py / test.py uses) and the
PCKh evaluator: a ValueError naming the file, the annotation id / entry / detection index and the field
(docs/RELIABILITY.md, issue #12 "Inputs"). Degenerate boxes are skipped with one warning (test_degenerate_boxes)."""
import json
import logging
import os
import os.path as osp

import numpy as np
import pytest

from projects.GCPose.gcpose.preset import detection_config
from cvpack.config.megvii import megvii_config
from cvpack.config.simple_baselines import simple_baselines_config
from cvpack.data import build_dataset
from cvpack.evaluation import evaluate_pckh

COCO_TRAIN = 'annotations/person_keypoints_train2017.json'
COCO_VAL = 'annotations/person_keypoints_val2017.json'
DETS = 'det_json/COCO_val2017_detections_AP_H_56_person.json'


def make_root(src, tmp_path, edits):
    """A dataset root under tmp_path: the image folders of ``src`` linked, annotation files copied with
    ``edits`` {relative path: function(data) -> data or None (edited in place), or a str written as is}."""
    root = tmp_path / 'root'
    for name in os.listdir(src):
        if name != 'annotations' and name != 'det_json':
            os.makedirs(root, exist_ok=True)
            os.symlink(osp.join(src, name), root / name)
    for sub in ('annotations', 'det_json'):
        if osp.isdir(osp.join(src, sub)):
            os.makedirs(root / sub)
            for name in os.listdir(osp.join(src, sub)):
                rel = '%s/%s' % (sub, name)
                with open(osp.join(src, rel)) as f:
                    text = f.read()
                edit = edits.get(rel)
                if callable(edit):
                    data = json.loads(text)
                    text = json.dumps(edit(data) or data, allow_nan=True)
                elif edit is not None:
                    text = edit
                (root / rel).write_text(text)
    return str(root)


def _person(data, n=2):
    return [a for a in data['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']][n]


def _set_kp(i, value):
    def edit(data):
        _person(data)['keypoints'][i] = value
    return edit


def _ann_id(src, rel, n=2):
    with open(osp.join(src, rel)) as f:
        return _person(json.load(f), n)['id']


@pytest.mark.parametrize('pipeline', ['megvii', 'detection'])
@pytest.mark.parametrize('edit,message', [
    (_set_kp(3, float('nan')), r'keypoints\[3\] is nan, not a finite number'),
    (_set_kp(4, '1'), r"keypoints\[4\] is '1' \(str\), not a number"),
    (_set_kp(5, True), r'keypoints\[5\] is True \(bool\), not a number'),
    (lambda d: _person(d)['bbox'].__setitem__(0, float('inf')), r'bbox\[0\] is inf, not a finite number'),
    (lambda d: _person(d).__setitem__('num_keypoints', '3'), r"num_keypoints is '3' \(str\), not a number"),
])
def test_bad_coco_gt_names_file_annotation_and_field(coco_subset, tmp_path, pipeline, edit, message):
    root = make_root(coco_subset, tmp_path, {COCO_TRAIN: edit})
    cfg = megvii_config(str(tmp_path)) if pipeline == 'megvii' else detection_config(str(tmp_path))
    cfg.DATASET.ROOT = root
    with pytest.raises(ValueError, match=r'person_keypoints_train2017\.json: annotation id %d: %s'
                       % (_ann_id(coco_subset, COCO_TRAIN), message)):
        build_dataset(cfg, 'train')


def test_nan_in_val_gt_stops_test_py_dataset(coco_subset, tmp_path):
    """test.py's val set (detections or GT boxes) reads the GT file through the same validation."""
    root = make_root(coco_subset, tmp_path, {COCO_VAL: _set_kp(0, float('nan'))})
    for use_gt in (False, True):
        cfg = megvii_config(str(tmp_path))
        cfg.DATASET.ROOT, cfg.TEST.USE_GT_BBOX = root, use_gt
        with pytest.raises(ValueError, match=r'person_keypoints_val2017\.json: annotation id %d: keypoints\[0\] is nan'
                           % _ann_id(coco_subset, COCO_VAL)):
            build_dataset(cfg, 'val')


def test_sixteen_keypoints_and_truncated_gt(coco_subset, tmp_path):
    def sixteen(data):
        for a in data['annotations']:
            a['keypoints'] = a['keypoints'][:48]
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = make_root(coco_subset, tmp_path / 'a', {COCO_TRAIN: sixteen})
    with pytest.raises(ValueError, match=r'train2017\.json: annotation id \d+: keypoints has 48 values, expected 51'):
        build_dataset(cfg, 'train')
    with open(osp.join(coco_subset, COCO_TRAIN)) as f:
        text = f.read()
    cfg.DATASET.ROOT = make_root(coco_subset, tmp_path / 'b', {COCO_TRAIN: text[:-1000]})
    with pytest.raises(ValueError, match=r'COCO annotation file .*train2017\.json is not valid JSON \(truncated\?\)'):
        build_dataset(cfg, 'train')


@pytest.mark.parametrize('value,message', [
    (float('nan'), r'bbox\[2\] is nan, not a finite number'),
    ('100', r"bbox\[2\] is '100' \(str\), not a number"),
])
def test_bad_detection_names_file_and_index(coco_subset, tmp_path, value, message):
    """test.py's val set from TEST.DET_FILE: a NaN box used to reach the transforms ("center contains NaN")."""
    root = make_root(coco_subset, tmp_path, {DETS: lambda d: d[7]['bbox'].__setitem__(2, value)})
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = root
    with pytest.raises(ValueError, match=r'COCO_val2017_detections_AP_H_56_person\.json: detection #7 '
                                         r'\(image id \d+\): ' + message):
        build_dataset(cfg, 'val')


@pytest.mark.parametrize('field,value,message', [
    ('joints', float('nan'), r'joints\[5\] is nan, not a finite number'),
    ('joints', '12', r"joints\[5\] is '12' \(str\), not a number"),
    ('joints_vis', True, r'joints_vis\[2\] is True \(bool\), not a number'),
    ('joints_vis', 7, r'joints_vis\[2\] is 7, expected 0 or 1'),        # passed: visibility 14, a loss weight
    ('joints_vis', -1, r'joints_vis\[2\] is -1, expected 0 or 1'),       # passed: an unlabelled joint
    ('joints_vis', 0.5, r'joints_vis\[2\] is 0.5, expected 0 or 1'),     # passed: visibility 1 (occluded)
    ('scale', 'big', r"scale is 'big' \(str\), not a number"),
    ('center', float('inf'), r'center\[1\] is inf, not a finite number'),
])
def test_bad_mpii_names_file_entry_and_field(mpii_subset, tmp_path, field, value, message):
    def edit(entries):
        e = entries[1]
        if field == 'joints':
            e['joints'][2][1] = value
        elif field == 'joints_vis':
            e['joints_vis'][2] = value
        elif field == 'center':
            e['center'][1] = value
        else:
            e[field] = value
    root = make_root(mpii_subset, tmp_path, {'annotations/train.json': edit})
    cfg = megvii_config(str(tmp_path), dataset='MPII')
    cfg.DATASET.ROOT = root
    with pytest.raises(ValueError, match=r'train\.json: entry #1 \(.*\.jpg\): ' + message):
        build_dataset(cfg, 'train')


def test_pckh_gt_validated(mpii_subset, tmp_path):
    with open(osp.join(mpii_subset, 'annotations/valid.json')) as f:
        entries = json.load(f)
    preds = np.stack([np.asarray(e['joints'], np.float64) - 1 for e in entries])
    table = evaluate_pckh(preds, osp.join(mpii_subset, 'annotations/valid.json'))
    assert table['Mean'] == pytest.approx(100.0)             # GT as predictions (reference value)
    entries[3]['joints'][9][0] = float('nan')
    bad = tmp_path / 'valid.json'
    bad.write_text(json.dumps(entries, allow_nan=True))
    with pytest.raises(ValueError, match=r'valid\.json: record 3: joints\[18\] is nan, not a finite number'):
        evaluate_pckh(preds, str(bad))
    bad.write_text(json.dumps(entries)[:-50])
    with pytest.raises(ValueError, match=r'MPII ground truth file .*valid\.json is not valid JSON'):
        evaluate_pckh(preds, str(bad))
    entries[3]['joints'][9][0] = 1.0         # finite again
    entries[3]['joints_vis'][4] = 2          # PCKh counted it as visible, as it would 0.5
    bad.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r'valid\.json: record 3: joints_vis\[4\] is 2, expected 0 or 1'):
        evaluate_pckh(preds, str(bad))


def test_degenerate_boxes_are_skipped_with_one_warning(coco_subset, tmp_path, log_capture):
    """GT and detection boxes with w or h <= 0 are skipped, counted and named in one warning per file."""
    caplog = log_capture
    with open(osp.join(coco_subset, COCO_TRAIN)) as f:
        data = json.load(f)
    persons = [a for a in data['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']]
    bad_ids = [persons[i]['id'] for i in (1, 4, 6, 9)]

    def gt_edit(d):
        for a, (w, h) in zip([a for a in d['annotations'] if a['id'] in bad_ids], [(0, 5), (5, -1), (0, 0), (-3, 8)]):
            a['bbox'][2:] = [w, h]
    root = make_root(coco_subset, tmp_path, {COCO_TRAIN: gt_edit, DETS: lambda d: d[5]['bbox'].__setitem__(3, 0)})
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = root
    clean = megvii_config(str(tmp_path))
    clean.DATASET.ROOT = coco_subset
    with caplog.at_level(logging.WARNING):
        n_clean = len(build_dataset(clean, 'train'))
        ds = build_dataset(cfg, 'train')
    assert len(ds) == n_clean - 4
    assert all(np.all(np.isfinite(r['center'])) and np.all(r['scale'] > 0) for r in ds.records)
    warns = [r.getMessage() for r in caplog.records if 'degenerate box' in r.getMessage()]
    assert len(warns) == 1 and 'person_keypoints_train2017.json: skipped 4 person annotations' in warns[0]
    assert all('annotation id %d' % i in warns[0] for i in bad_ids[:3])   # the first three, in file order
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        val = build_dataset(cfg, 'val')
    assert val.det_stats['degenerate_box'] == 1
    assert 'detections_AP_H_56_person.json: skipped 1 detections (degenerate box: w or h <= 0), e.g. detection #5' \
        in caplog.text
    sb, sb_clean = simple_baselines_config(str(tmp_path)), simple_baselines_config(str(tmp_path))
    sb.DATASET.ROOT, sb_clean.DATASET.ROOT = root, coco_subset
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(build_dataset(sb, 'train')) == len(build_dataset(sb_clean, 'train')) - 4
    assert 'skipped 4 person annotations (degenerate box: w or h <= 0)' in caplog.text   # was silent there
    cfg = detection_config(str(tmp_path))
    cfg.DATASET.ROOT = root
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        det = build_dataset(cfg, 'train')
    boxes = np.concatenate([r['boxes'] for r in det.records])
    assert np.all(boxes[:, 2:] > boxes[:, :2]) and 'skipped 4 person annotations' in caplog.text


def test_mpii_zero_scale_is_skipped_with_one_warning(mpii_subset, tmp_path, log_capture):
    caplog = log_capture
    def edit(entries):
        entries[2]['scale'] = 0
        entries[4]['scale'] = -1.5
    cfg = megvii_config(str(tmp_path), dataset='MPII')
    cfg.DATASET.ROOT = mpii_subset
    n_clean = len(build_dataset(cfg, 'train'))
    cfg.DATASET.ROOT = make_root(mpii_subset, tmp_path, {'annotations/train.json': edit})
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(cfg, 'train')
    assert len(ds) == n_clean - 2 and [r['ann_id'] for r in ds.records if r['ann_id'] in (2, 4)] == []
    assert 'train.json: skipped 2 entries (degenerate box: scale <= 0), e.g. entry #2 scale 0; entry #4 scale -1.5' \
        in caplog.text


def test_duplicate_image_id_in_gt_is_an_error(coco_subset, tmp_path):
    """Two images with one id: every person of that id was cropped from the last entry's file (here another
    image's), silently. The loaders and the evaluator share the check (tests/evaluation/test_eval_inputs.py)."""
    with open(osp.join(coco_subset, COCO_TRAIN)) as f:
        images = json.load(f)['images']
    n = len(images)

    def edit(data):
        data['images'].append(dict(data['images'][0], file_name=data['images'][1]['file_name']))
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = make_root(coco_subset, tmp_path, {COCO_TRAIN: edit})
    with pytest.raises(ValueError, match=r'person_keypoints_train2017\.json: images\[%d\]: image id %d is given twice '
                                         r'\(images\[0\] and images\[%d\]\)' % (n, images[0]['id'], n)):
        build_dataset(cfg, 'train')
