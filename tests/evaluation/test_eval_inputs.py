"""Bad ground truth and bad results through ``python -m cvpack.evaluation`` (main(argv), one real subprocess):
exit code 2 and one line naming the file, the annotation id (GT) or record index (results) and the field;
never a traceback and never a number computed from bad values (docs/RELIABILITY.md, issue #12 "Inputs")."""
import json
import os
import re
import subprocess
import sys

import pytest

from cvpack.evaluation.__main__ import main

PEER = 'mediapipe_mc0'


@pytest.fixture(scope='module')
def gt_path(coco_subset):
    return os.path.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')


@pytest.fixture(scope='module')
def results_path(repo_root):
    return os.path.join(repo_root, 'tests', 'data', 'peer_predictions',
                        'coco_val2017_subset_%s_keypoints_results.json' % PEER)


def _gt(gt_path):
    with open(gt_path) as f:
        return json.load(f)


def _labelled(gt):
    return [a for a in gt['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']]


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_nan_in_gt_is_an_error_not_a_higher_ap(tmp_path, gt_path, results_path, repo_root, capsys):
    """Issue #12: 20 annotations with NaN x coordinates raised AP 0.1789 -> 0.2492 (pycocotools: an OKS of NaN
    is never below the threshold, so NaN GT *matched*). Now the real CLI refuses the file, naming the first one."""
    gt = _gt(gt_path)
    first = _labelled(gt)[0]
    for ann in _labelled(gt)[:20]:
        ann['keypoints'] = [float('nan') if i % 3 == 0 and v else v for i, v in enumerate(ann['keypoints'])]
    bad = tmp_path / 'nan_gt.json'
    bad.write_text(json.dumps(gt, allow_nan=True))
    assert main([gt_path, results_path, '--json']) == 0      # the clean file: pycocotools' 0.1789
    assert json.loads(capsys.readouterr().out)['AP'] == pytest.approx(0.1789, abs=5e-5)
    env = dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'cvpack.evaluation', str(bad), results_path, '--json'],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stdout == ''
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip() == ('error: %s: annotation id %d: keypoints[0] is nan, not a finite number (NaN/inf)'
                                   % (bad, first['id']))


def _set(field, value, n=3):
    def corrupt(gt):
        ann = _labelled(gt)[n]
        if '[' in field:
            name, idx = field[:-1].split('[')
            ann[name][int(idx)] = value
        else:
            ann[field] = value
        return ann['id']
    return corrupt


def _sixteen(gt):   # every annotation with 16 keypoints (48 values) against the 17-keypoint category
    for ann in gt['annotations']:
        ann['keypoints'] = ann['keypoints'][:48]
    return gt['annotations'][0]['id']


@pytest.mark.parametrize('corrupt,message', [
    (_set('keypoints[4]', float('inf')), r'keypoints\[4\] is inf, not a finite number'),
    (_set('keypoints[3]', '1'), r"keypoints\[3\] is '1' \(str\), not a number"),
    (_set('keypoints[0]', True), r'keypoints\[0\] is True \(bool\), not a number'),
    (_set('keypoints[2]', 3), r'keypoints\[2\] \(visibility of keypoint 0\) is 3, expected 0, 1 or 2'),
    (_sixteen, r'keypoints has 48 values, expected 51 \(17 keypoints x 3\)'),
    (_set('bbox[2]', float('nan')), r'bbox\[2\] is nan, not a finite number'),
    (_set('bbox', [1, 2, 3]), r'bbox has 3 values, expected 4'),
    (_set('area', '1200'), r"area is '1200' \(str\), not a number"),
    (_set('num_keypoints', False), r'num_keypoints is False \(bool\), not a number'),
    (_set('iscrowd', 2), r'iscrowd is 2, expected 0 or 1'),
    (lambda gt: _labelled(gt)[3].pop('area') and _labelled(gt)[3]['id'], r'has no area'),
])
def test_bad_gt_names_file_annotation_and_field(tmp_path, gt_path, results_path, capsys, corrupt, message):
    gt = _gt(gt_path)
    ann_id = corrupt(gt)
    bad = tmp_path / 'bad_gt.json'
    bad.write_text(json.dumps(gt, allow_nan=True))
    code, out, err = _cli([bad, results_path], capsys)
    assert code == 2 and out == ''
    assert err.startswith('error: %s: annotation id %d' % (bad, ann_id)), err
    assert re.search(message, err), err


def test_truncated_gt_and_directories_are_named(tmp_path, gt_path, results_path, capsys):
    with open(gt_path) as f:
        text = f.read()
    cut = tmp_path / 'cut_gt.json'
    cut.write_text(text[:len(text) // 2])
    code, out, err = _cli([cut, results_path], capsys)
    assert code == 2 and err.startswith('error: COCO ground truth file %s is not valid JSON (truncated?)' % cut)
    code, out, err = _cli([tmp_path, results_path], capsys)          # a folder as the GT
    assert (code, out, err) == (2, '', 'error: COCO ground truth file %s is a directory, not a file\n' % tmp_path)
    code, out, err = _cli([gt_path, tmp_path], capsys)               # a folder as the results
    assert (code, out, err) == (2, '', 'error: COCO results file %s is a directory, not a file\n' % tmp_path)
    code, out, err = _cli([gt_path, tmp_path / 'nope.json'], capsys)
    assert (code, err) == (2, 'error: COCO results file not found: %s\n' % (tmp_path / 'nope.json'))


@pytest.mark.parametrize('field,value,message', [
    ('keypoints', '1', r"keypoints\[7\] is '1' \(str\), not a number"),
    ('score', True, r'score is True \(bool\), not a number'),
    ('score', '0.9', r"score is '0.9' \(str\), not a number"),
    ('keypoints', False, r'keypoints\[7\] is False \(bool\), not a number'),
    ('category_id', True, r'category_id is True \(bool\), not an int or str id'),
    # a JSON integer past the float range: OverflowError traceback (exit 1) naming no file before
    pytest.param('score', 10 ** 400, r'score is an integer past the float range \(1.8e308\), not a finite number',
                 id='score-10**400'),
])
def test_string_and_boolean_results_are_rejected(tmp_path, gt_path, results_path, capsys, field, value, message):
    """Issue #12: a string keypoint "1" and a boolean score were accepted (numpy/float() converted them)."""
    with open(results_path) as f:
        results = json.load(f)
    if field == 'keypoints':
        results[5]['keypoints'][7] = value
    else:
        results[5][field] = value
    bad = tmp_path / 'bad_results.json'
    bad.write_text(json.dumps(results))
    code, out, err = _cli([gt_path, bad], capsys)
    assert code == 2 and out == '' and err.startswith('error: %s: record 5: ' % bad)
    assert re.search(message, err), err


def test_nested_keypoint_results_still_accepted(gt_path):
    """(K, 3) nested lists were always accepted in results lists (flattened); the stricter checks keep that."""
    from cvpack.evaluation import evaluate_keypoints
    results = [{'image_id': a['image_id'], 'category_id': 1, 'score': 1.0,
                'keypoints': [a['keypoints'][i:i + 3] for i in range(0, 51, 3)]} for a in _labelled(_gt(gt_path))]
    assert evaluate_keypoints(gt_path, results)['AP'] == pytest.approx(1.0)
    results[0]['keypoints'][2][1] = '5'
    with pytest.raises(ValueError, match=r"<results list>: record 0: keypoints\[7\] is '5' \(str\), not a number"):
        evaluate_keypoints(gt_path, results)


def test_duplicate_ids_in_gt_are_an_error_not_another_ap(tmp_path, gt_path, results_path, capsys):
    """pycocotools indexes GT annotations by id: 19 annotations given the id of a 20th were scored as 19 copies of
    the last one (AP 0.1789 -> 0.1494 for the shipped mediapipe results, exit 0). Two images with one id: the
    loaders cut every annotation of that id from the last image's file. Both are corrupt files now."""
    gt = _gt(gt_path)
    persons = _labelled(gt)
    first = gt['annotations'].index(persons[0])
    for ann in persons[1:20]:
        ann['id'] = persons[0]['id']
    bad = tmp_path / 'dup_ann.json'
    bad.write_text(json.dumps(gt))
    code, out, err = _cli([bad, results_path, '--json'], capsys)
    assert (code, out) == (2, '')
    assert err == 'error: %s: annotation id %d is given twice (annotations[%d] and annotations[%d])\n' % (
        bad, persons[0]['id'], first, gt['annotations'].index(persons[1]))
    gt = _gt(gt_path)
    gt['images'].append(dict(gt['images'][3], file_name='another.jpg'))
    bad = tmp_path / 'dup_image.json'
    bad.write_text(json.dumps(gt))
    code, out, err = _cli([bad, results_path, '--json'], capsys)
    assert (code, out) == (2, '')
    assert err == 'error: %s: images[%d]: image id %d is given twice (images[3] and images[%d])\n' % (
        bad, len(gt['images']) - 1, gt['images'][3]['id'], len(gt['images']) - 1)


def test_str_annotation_ids_are_named_before_pycocotools(tmp_path, gt_path, results_path, capsys):
    """Validation allows str ids (the loaders keep them); pycocotools does not for annotations (it stores matched
    GT ids in a float array): the CLI said only "error: could not convert string to float: 'a230831'"."""
    gt = _gt(gt_path)
    for ann in gt['annotations']:
        ann['id'] = 'a%d' % ann['id']
    bad = tmp_path / 'str_ids.json'
    bad.write_text(json.dumps(gt))
    code, out, err = _cli([bad, results_path], capsys)
    assert (code, out) == (2, '')
    assert err == ("error: %s: annotation id %r is a str: pycocotools needs int annotation ids (image ids may be "
                   "str)\n" % (bad, gt['annotations'][0]['id']))


def test_mpii_valid_json_as_coco_ground_truth_is_one_line_pointing_to_pckh(mpii_subset, tmp_path, capsys):
    """MPII's valid.json (a JSON list) given as the COCO ground truth, as `--dataset MPII` invites: a bare
    AttributeError traceback ('list' object has no attribute 'get') from prepare_gt before the validation."""
    results = tmp_path / 'results.json'
    results.write_text('[]')
    valid = os.path.join(mpii_subset, 'annotations', 'valid.json')
    code, out, err = _cli([valid, results, '--dataset', 'MPII'], capsys)
    assert code == 2 and out == '', (code, out, err)
    assert re.fullmatch(r"error: .*valid\.json: a COCO annotation file is a JSON object, got a list \(MPII PCKh of "
                        r"test\.py's results\.json: --pckh\)\n", err), err


def test_results_given_as_the_ground_truth_are_named(gt_path, results_path, capsys):
    """The two files swapped (results first): an AttributeError traceback ('list' object has no attribute 'get'),
    exit 1, from the area filling that ran before the validation."""
    code, out, err = _cli([results_path, gt_path], capsys)
    assert code == 2 and out == ''
    assert err == 'error: %s: a COCO annotation file is a JSON object, got a list\n' % results_path
    for dataset in ('CROWDPOSE', 'COCO'):   # with and without the area filling
        code, _, err = _cli([results_path, gt_path, '--dataset', dataset], capsys)
        assert code == 2 and 'a COCO annotation file is a JSON object, got a list' in err
