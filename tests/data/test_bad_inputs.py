"""Every bad-input case raises (or skips and counts) with the file and the record named."""
import json
import logging
import os.path as osp

import numpy as np
import pytest

from cvpack.config.megvii import megvii_config
from cvpack.data import build_dataset
from cvpack.data.coco import coco_det_records, coco_gt_records, load_coco_gt
from cvpack.data.io import ImageReadError, read_image
from cvpack.data.meta import COCO, MPII
from cvpack.data.mpii import mpii_records

VAL_ANN = 'annotations/person_keypoints_val2017.json'


def _val_gt(coco_subset):
    with open(osp.join(coco_subset, VAL_ANN)) as f:
        return json.load(f)


def test_read_image_errors(tmp_path, coco_subset):
    missing = str(tmp_path / 'nope.jpg')
    with pytest.raises(ImageReadError, match='not found.*nope.jpg.*record 7'):
        read_image(missing, record=7)
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'\xff\xd8\xff\xe0 this is not really a jpeg' * 10)
    with pytest.raises(ImageReadError, match='cannot decode.*corrupt.jpg'):
        read_image(str(corrupt))
    (tmp_path / 'empty.jpg').write_bytes(b'')
    with pytest.raises(ImageReadError, match='empty.jpg'):
        read_image(str(tmp_path / 'empty.jpg'))
    with pytest.raises(ImageReadError, match='cannot read'):
        read_image(str(tmp_path))                              # a folder
    path = osp.join(coco_subset, 'images/val2017/000000000785.jpg')
    bgr, rgb = read_image(path), read_image(path, rgb=True)
    assert bgr.dtype == np.uint8 and bgr.ndim == 3 and np.array_equal(bgr[..., ::-1], rgb)


def test_dataset_names_missing_and_corrupt_image(coco_subset, tmp_path):
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    ds = build_dataset(cfg, 'train')
    ds.records[3]['image_path'] = str(tmp_path / 'gone.jpg')
    with pytest.raises(ImageReadError, match=r'gone\.jpg.*train #3 \(ann id \d+\)'):
        ds[3]
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(np.random.RandomState(0).bytes(3000))
    ds.records[4]['image_path'] = str(bad)
    with pytest.raises(ImageReadError, match=r'bad\.jpg.*train #4'):
        ds[4]


def test_wrong_keypoint_count(coco_subset, tmp_path):
    gt = _val_gt(coco_subset)
    ann = [a for a in gt['annotations'] if a['num_keypoints'] > 0][0]
    ann['keypoints'] = ann['keypoints'][:48]
    p = tmp_path / 'bad_kps.json'
    p.write_text(json.dumps(gt))
    with pytest.raises(ValueError, match=r'bad_kps\.json: annotation id %d: keypoints has 48 values, expected 51'
                       % ann['id']):
        coco_gt_records(str(p), osp.join(coco_subset, 'images/val2017'), COCO)


def test_categories_and_unknown_image_in_gt(coco_subset, tmp_path):
    gt = _val_gt(coco_subset)
    gt['categories'][0]['keypoints'] = gt['categories'][0]['keypoints'][::-1]
    p = tmp_path / 'bad_cat.json'
    p.write_text(json.dumps(gt))
    with pytest.raises(ValueError, match=r'bad_cat\.json: person keypoints'):
        load_coco_gt(str(p), COCO)
    gt = _val_gt(coco_subset)
    gt['annotations'][0]['image_id'] = 123456789
    p = tmp_path / 'bad_img.json'
    p.write_text(json.dumps(gt))
    with pytest.raises(ValueError, match=r'bad_img\.json: annotation id %d names image id 123456789'
                       % gt['annotations'][0]['id']):
        load_coco_gt(str(p), COCO)
    with pytest.raises(ValueError, match=r'person_keypoints_val2017\.json: .* do not match MPII metadata'):
        load_coco_gt(osp.join(coco_subset, VAL_ANN), MPII)


def test_detections_with_unknown_images_are_skipped_and_counted(coco_subset, tmp_path, log_capture):
    caplog = log_capture
    with open(osp.join(coco_subset, 'det_json/COCO_val2017_detections_AP_H_56_person.json')) as f:
        dets = json.load(f)
    extra = [dict(d, image_id=999999901 + i) for i, d in enumerate(dets[:3])]
    extra.append(dict(dets[0], category_id=2))
    extra.append(dict(dets[0], score=0.01))
    p = tmp_path / 'dets.json'
    p.write_text(json.dumps(dets + extra))
    stats = {}
    with caplog.at_level(logging.WARNING, logger='cvpack.data.coco'):
        recs = coco_det_records(str(p), osp.join(coco_subset, VAL_ANN), osp.join(coco_subset, 'images/val2017'),
                                COCO, score_thresh=0.05, stats=stats)
    assert stats == dict(unknown_image=3, other_category=1, low_score=1 + sum(d['score'] < 0.05 for d in dets),
                         degenerate_box=0)
    assert len(recs) == len(dets) - sum(d['score'] < 0.05 for d in dets)
    assert 'dets.json: skipped 3 detections' in caplog.text and '999999901' in caplog.text
    bad = dets[:2]
    bad[1] = dict(bad[1], bbox=[1, 2, 3])
    p.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r'dets\.json: detection #1 .*bbox'):
        coco_det_records(str(p), osp.join(coco_subset, VAL_ANN), '', COCO)


@pytest.mark.parametrize('image_id', [True, 397133.0, None, [397133]])
def test_detection_image_id_must_be_int_or_str(coco_subset, tmp_path, image_id):
    """A boolean or float id matched an image silently (True == 1, 397133.0 == 397133), as the API refuses it."""
    with open(osp.join(coco_subset, 'det_json/COCO_val2017_detections_AP_H_56_person.json')) as f:
        dets = json.load(f)[:3]
    dets[2] = dict(dets[2], image_id=image_id)
    p = tmp_path / 'dets.json'
    p.write_text(json.dumps(dets))
    with pytest.raises(ValueError, match=r'dets\.json: detection #2: image_id is .* not an int or str id'):
        coco_det_records(str(p), osp.join(coco_subset, VAL_ANN), '', COCO)


def test_string_ids_are_kept_as_given(coco_subset, tmp_path):
    """Ids may be int or str (validation allows both, as COCO conversions use): the COCO records cast them with
    int(), so 'img397133' raised "invalid literal for int()" naming no file, and '000123' would have become 123,
    no image of the GT at evaluation. Records keep a str id as it is; int ids stay ints."""
    from cvpack.evaluation import evaluate_keypoints
    gt = _val_gt(coco_subset)
    for img in gt['images']:
        img['id'] = '%012d' % img['id']
    for ann in gt['annotations']:
        ann['image_id'] = '%012d' % ann['image_id']
    ann_file = tmp_path / 'str_ids.json'
    ann_file.write_text(json.dumps(gt))
    images = osp.join(coco_subset, 'images/val2017')
    recs = coco_gt_records(str(ann_file), images, COCO)
    labelled = [a for a in gt['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']]
    assert [(r['image_id'], r['ann_id']) for r in recs] == [(a['image_id'], a['id']) for a in labelled]
    with open(osp.join(coco_subset, 'det_json/COCO_val2017_detections_AP_H_56_person.json')) as f:
        dets = [dict(d, image_id='%012d' % d['image_id']) for d in json.load(f)]
    det_file = tmp_path / 'dets.json'
    det_file.write_text(json.dumps(dets))
    det_recs = coco_det_records(str(det_file), str(ann_file), images, COCO)
    assert [r['image_id'] for r in det_recs] == [d['image_id'] for d in dets]
    # GT keypoints as predictions for the records: the ids match the ground truth's, AP 1
    results = [{'image_id': r['image_id'], 'category_id': 1, 'score': 1.0, 'keypoints': r['joints'].ravel().tolist()}
               for r in recs]
    assert evaluate_keypoints(str(ann_file), results)['AP'] == pytest.approx(1.0)
    for ann in gt['annotations']:       # str annotation ids: the training records keep them too
        ann['id'] = 'a%d' % ann['id']
    ann_file.write_text(json.dumps(gt))
    assert [r['ann_id'] for r in coco_gt_records(str(ann_file), images, COCO)] == [a['id'] for a in labelled]
    assert isinstance(coco_gt_records(osp.join(coco_subset, VAL_ANN), images, COCO)[0]['image_id'], int)


def test_missing_train_images_are_skipped_and_logged(coco_subset, tmp_path, log_capture):
    caplog = log_capture
    with caplog.at_level(logging.WARNING, logger='cvpack.data.coco'):   # none left: an error saying why
        with pytest.raises(ValueError, match=r'0 of 226 annotations kept as persons \(dropped 125 by a missing image'):
            coco_gt_records(osp.join(coco_subset, VAL_ANN), str(tmp_path), COCO)
    assert 'missing image files' in caplog.text and str(tmp_path) in caplog.text


def test_mpii_bad_entry(mpii_subset, tmp_path):
    with open(osp.join(mpii_subset, 'annotations/train.json')) as f:
        entries = json.load(f)
    entries[2]['joints'] = entries[2]['joints'][:15]
    p = tmp_path / 'mpii_bad.json'
    p.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r'mpii_bad\.json: entry #2 \(.*\.jpg\): joints has 15 entries, expected 16'):
        mpii_records(str(p), osp.join(mpii_subset, 'images'), MPII)
    p.write_text('{not json')
    with pytest.raises(ValueError, match='not valid JSON'):
        mpii_records(str(p), '', MPII)


@pytest.mark.parametrize('preset', ['megvii', 'cpn'])
def test_missing_files_name_the_config_key(coco_subset, tmp_path, preset):
    """A val annotation / detection file that is missing, a folder or unset: the message names the config key
    and the path (train.py and test.py build their datasets here), 'DATASET.VAL_ANN (<path>): file not found'."""
    from cvpack.config.cpn import cpn_config
    cfg = (megvii_config if preset == 'megvii' else cpn_config)(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    cfg.TEST.USE_GT_BBOX = False      # (the cpn preset tests on GT boxes)
    cases = [('DATASET', 'VAL_ANN', 'annotations/nope.json', FileNotFoundError,
              r'^DATASET\.VAL_ANN \(%s/annotations/nope\.json\): file not found$'),
             ('TEST', 'DET_FILE', 'det_json/nope.json', FileNotFoundError,
              r'^TEST\.DET_FILE \(%s/det_json/nope\.json\): file not found$'),
             ('TEST', 'DET_FILE', 'det_json', ValueError, r'^TEST\.DET_FILE \(%s/det_json\): a directory, not a file$'),
             ('TEST', 'DET_FILE', '', ValueError, r'^TEST\.DET_FILE is empty: set it to a file below DATASET\.ROOT')]
    for section, key, value, error, message in cases:
        good = cfg[section][key]
        cfg[section][key] = value
        with pytest.raises(error, match=message.replace('%s', coco_subset.replace('.', r'\.'))
                           if '%s' in message else message):
            build_dataset(cfg, 'val')
        cfg[section][key] = good
    cfg.DATASET.TRAIN_ANN = 'annotations/gone.json'
    with pytest.raises(FileNotFoundError, match=r'^DATASET\.TRAIN_ANN \(.*/annotations/gone\.json\): file not found'):
        build_dataset(cfg, 'train')
    assert len(build_dataset(cfg, 'val')) > 0    # the good values back: the val set builds


@pytest.mark.parametrize('value', [None, '', 7])
def test_image_entry_without_a_file_name_is_named(coco_subset, tmp_path, value):
    """An image entry without "file_name" (or with an empty / non-str one) raised a bare KeyError: 'file_name'
    (or joined a number onto the folder); now an error names the file and the image id, for the GT and the
    detection records."""
    gt = _val_gt(coco_subset)
    img = next(i for i in gt['images'] if any(a['image_id'] == i['id'] and a['num_keypoints'] > 0
                                               for a in gt['annotations']))
    if value is None:
        del img['file_name']
    else:
        img['file_name'] = value
    p = tmp_path / 'no_name.json'
    p.write_text(json.dumps(gt))
    expected = r'no_name\.json: image id %d has (no "file_name"|file_name %r), not an image file name' % (
        img['id'], value)
    with pytest.raises(ValueError, match=expected):
        coco_gt_records(str(p), osp.join(coco_subset, 'images/val2017'), COCO)
    dets = tmp_path / 'dets.json'
    dets.write_text(json.dumps([{'image_id': img['id'], 'category_id': 1, 'bbox': [10, 10, 50, 100], 'score': 0.9}]))
    with pytest.raises(ValueError, match=expected):
        coco_det_records(str(dets), str(p), osp.join(coco_subset, 'images/val2017'), COCO)


def _det_file(coco_subset, tmp_path, edit=None, every=None):
    """The shipped detection file under tmp_path, after ``edit(dets)`` (returns the new list, or None: edited in
    place) and with the fields ``every`` set on every detection."""
    with open(osp.join(coco_subset, 'det_json/COCO_val2017_detections_AP_H_56_person.json')) as f:
        dets = json.load(f)
    if edit is not None:
        out = edit(dets)
        dets = dets if out is None else out
    for det in dets:
        det.update(every or {})
    p = tmp_path / 'dets.json'
    p.write_text(json.dumps(dets))
    return str(p), len(dets)


@pytest.mark.parametrize('field,value,message', [
    # a str category '1' was "another category" (every box of such a file dropped: AP 0, exit 0); True was person
    ('category_id', '1', r"category_id is '1' \(str\), not an int category id \(person is 1\)"),
    ('category_id', True, r'category_id is True \(bool\), not an int category id'),
    ('category_id', None, r'category_id is None \(NoneType\), not an int category id'),
    # a JSON integer past the float range: OverflowError naming no file
    pytest.param('score', 10 ** 400, r'score is an integer past the float range \(1.8e308\), not a finite number',
                 id='score-10**400'),
])
def test_detection_category_and_score_types_are_named(coco_subset, tmp_path, field, value, message):
    from cvpack.apis.inputs import DetectionFile
    path, _ = _det_file(coco_subset, tmp_path, lambda d: d[4].__setitem__(field, value))
    with pytest.raises(ValueError, match=r'dets\.json: detection #4 \(image id \d+\): ' + message):
        coco_det_records(path, osp.join(coco_subset, VAL_ANN), '', COCO)
    with pytest.raises(ValueError, match=r'dets\.json: detection #4: ' + message):   # the API's det_json
        DetectionFile(path)


def test_detection_file_keeping_no_box_is_an_error(coco_subset, tmp_path, log_capture):
    """Every detection of category 0 (a 0-based person label): the val set was empty and test.py scored AP 0 with
    exit 0, the drop only in an info line. Now the error counts each filter; an empty file is a warning."""
    ann = osp.join(coco_subset, VAL_ANN)
    path, n = _det_file(coco_subset, tmp_path, every={'category_id': 0})
    with pytest.raises(ValueError, match=r'dets\.json: 0 of %d detections kept as person boxes \(dropped %d by '
                                         r'category_id other than 1 \(person\), found \[0\]\)$' % (n, n)):
        coco_det_records(path, ann, '', COCO)
    path, n = _det_file(coco_subset, tmp_path, every={'score': 0.01})
    with pytest.raises(ValueError, match=r'0 of %d .*dropped %d by a score below 0.5 \(TEST.DET_SCORE_THRESH\)'
                                         % (n, n)):
        coco_det_records(path, ann, '', COCO, score_thresh=0.5)
    path, _ = _det_file(coco_subset, tmp_path, lambda d: [])
    with log_capture.at_level(logging.WARNING, logger='cvpack.data.coco'):
        assert coco_det_records(path, ann, '', COCO) == []
    assert 'dets.json: the detection file is empty: no person to test, every metric will be 0' in log_capture.text
