"""PCKh on the shipped MPII subset and on a small gt_valid.mat built here."""
import json
import os
import re

import numpy as np
import pytest
from easydict import EasyDict as edict

from cvpack.evaluation import build_evaluator, evaluate_pckh
from cvpack.evaluation.pckh import TABLE_NAMES, load_mpii_gt


@pytest.fixture(scope='module')
def valid_json(mpii_subset):
    return os.path.join(mpii_subset, 'annotations', 'valid.json')


def _shifted(gt, fractions):
    """GT moved right by fraction * head size, per record (0-based frame, as predictions)."""
    preds = gt['joints'].copy()
    preds[..., 0] += (np.asarray(fractions) * gt['head_sizes'])[:, None]
    return preds


def test_gt_as_predictions_is_100(valid_json):
    gt = load_mpii_gt(valid_json)
    assert gt['head_source'] == 'head_segment' and gt['joints'].shape == (5, 16, 2)
    # 0-based: json joints minus 1 (the annotation is 1-based, MATLAB)
    with open(valid_json) as f:
        assert gt['joints'][0, 0, 0] == json.load(f)[0]['joints'][0][0] - 1
    table = evaluate_pckh(gt['joints'], valid_json)
    assert all(table[k] == pytest.approx(100.0) for k in TABLE_NAMES)


def test_shifted_predictions_known_values(valid_json):
    gt = load_mpii_gt(valid_json)
    # records 0, 2, 4 within 0.5 head sizes, 1 and 3 beyond: visible non-excluded joints are
    # 14 + 14 + 12 + 12 + 14 (records 2 and 3 have 14 visible of 16, pelvis/thorax visible in all)
    vis = gt['visible'].copy()
    vis[:, [6, 7]] = False
    counts = vis.sum(axis=1)
    table = evaluate_pckh(_shifted(gt, [0.4, 0.6, 0.4, 0.6, 0.4]), valid_json)
    expected = 100.0 * counts[[0, 2, 4]].sum() / counts.sum()
    assert table['Mean'] == pytest.approx(expected)
    assert table['Head'] == pytest.approx(60.0)          # head top visible in all 5
    assert table['Mean@0.1'] == pytest.approx(0.0)
    # 0.105 head sizes: inside the original's 0.11 "Mean@0.1" but outside the true 0.1 (docs/reference/defects.md R#17
    # fixed)
    table = evaluate_pckh(_shifted(gt, [0.105] * 5), valid_json)
    assert table['Mean'] == pytest.approx(100.0) and table['Mean@0.1'] == pytest.approx(0.0)


def test_head_boxes_from_mat(tmp_path):
    from scipy.io import savemat
    joints = np.zeros((16, 2, 2))
    joints[:, 0, :] = np.arange(16)[:, None] * 10 + 1          # 1-based x
    boxes = np.zeros((2, 2, 2))
    boxes[1, :, 0] = [30, 40]                                   # diagonal 50 -> head size 30
    boxes[1, :, 1] = [6, 8]                                     # diagonal 10 -> head size 6
    missing = np.zeros((16, 2))
    missing[0, 1] = 1
    path = str(tmp_path / 'gt_valid.mat')
    savemat(path, {'pos_gt_src': joints, 'jnt_missing': missing, 'headboxes_src': boxes})
    gt = load_mpii_gt(path)
    np.testing.assert_allclose(gt['head_sizes'], [30.0, 6.0])
    assert not gt['visible'][1, 0] and gt['joints'][0, 1, 0] == 10.0
    preds = gt['joints'].copy()
    preds[:, :, 1] += 4.0                                       # 4 px: < 15 (0.5 x 30) but > 3 (0.5 x 6)
    table = evaluate_pckh(preds, path)
    assert table['Mean'] == pytest.approx(100.0 * 14 / (14 + 13))
    assert table['Ankle'] == pytest.approx(np.mean([100.0, 50.0]))  # r-ankle only visible in record 0


def test_mpii_evaluator_orders_by_index(tmp_path, mpii_subset, valid_json):
    gt = load_mpii_gt(valid_json)
    preds = _shifted(gt, [0.4, 0.6, 0.4, 0.6, 0.4])
    instances = [{'index': i, 'image_id': 'img%d' % i, 'keypoints': np.concatenate([preds[i], np.ones((16, 1))], 1)}
                 for i in (3, 1, 0, 4, 2)]
    cfg = edict(DATASET=edict(NAME='MPII', ROOT=mpii_subset, VAL_ANN='annotations/valid.json', META_FILE='',
                               KEYPOINT=edict(NUM=16)), TEST=edict(EVALUATOR='', PCKH_GT=''))
    table = build_evaluator(cfg)(instances, str(tmp_path))
    assert table['Head'] == pytest.approx(60.0)
    assert len(json.loads((tmp_path / 'results.json').read_text())) == 5
    with pytest.raises(ValueError, match='one prediction per record'):
        build_evaluator(cfg)(instances[:4], str(tmp_path))
    # the joint count comes from the config (DATASET.KEYPOINT.NUM), checked per instance
    bad = [dict(i, keypoints=i['keypoints'][:15]) if i['index'] == 2 else i for i in instances]
    with pytest.raises(ValueError, match=r'record 2 has keypoints of shape \(15, 3\), expected \(16, 3\)'):
        build_evaluator(cfg)(bad, str(tmp_path))
    cfg.DATASET.KEYPOINT = edict(NUM=15)    # e.g. an MPII-format set without one joint
    with pytest.raises(ValueError, match=r'record 0 has keypoints of shape \(16, 3\), expected \(15, 3\)'):
        build_evaluator(cfg)(instances, str(tmp_path))


def test_unlabelled_head_joint_without_head_boxes_is_left_out_and_counted(tmp_path, valid_json, log_capture,
                                                                         capsys):
    """Without head boxes the normaliser is ||head top - upper neck||. Record 2's head top unlabelled (HRNet's
    placeholder [-1, -1], joints_vis 0) gave it a head size of 1066 px instead of 105 (Mean 21.2 -> 38.5,
    silently); then the whole file was refused, and test.py reads its records from that same json (no way to give
    gt_valid.mat there). Now the record is left out of the table with a warning naming it, and the table printed by
    the evaluator (test.py) and by the evaluation CLI says how many records were left out."""
    from cvpack.evaluation.__main__ import main
    from cvpack.evaluation.pckh import format_pckh
    gt = load_mpii_gt(valid_json)
    preds = gt['joints'] + 40.0
    assert evaluate_pckh(preds, valid_json)['Mean'] == pytest.approx(100.0 * 14 / 66)   # record 0 only
    with open(valid_json) as f:
        entries = json.load(f)
    entries[2]['joints_vis'][9], entries[2]['joints'][9] = 0, [-1, -1]
    bad = tmp_path / 'valid.json'
    bad.write_text(json.dumps(entries))
    with log_capture.at_level('WARNING', logger='cvpack'):
        table = evaluate_pckh(preds, str(bad))
    assert table['Mean'] == pytest.approx(100.0 * 14 / 54)       # records 0, 1, 3, 4: 14 + 14 + 12 + 14 joints
    assert (table['records'], table['records_skipped'], table['skipped_records']) == (5, 1, [2])
    assert re.search(r'valid\.json: 1 of the 5 records scored have no head segment .* left out of PCKh: records 2;',
                     log_capture.text)
    skipped_line = '1 of 5 records left out: no head segment (head top or upper neck not labelled, no head boxes): ' \
                   'records 2'
    assert format_pckh(table).splitlines()[-1] == skipped_line
    assert evaluate_pckh(preds[[0, 1]], str(bad), records=[0, 1])['records_skipped'] == 0   # (TEST.MAX_IMAGES)
    # test.py's evaluator logs the table with the line; the CLI prints it
    instances = [{'index': i, 'image_id': 'img%d' % i, 'keypoints': np.concatenate([preds[i], np.ones((16, 1))], 1)}
                 for i in range(5)]
    cfg = edict(DATASET=edict(NAME='MPII', ROOT=str(tmp_path), VAL_ANN='valid.json', META_FILE='',
                              KEYPOINT=edict(NUM=16)), TEST=edict(EVALUATOR='', PCKH_GT=''))
    out = tmp_path / 'out'
    out.mkdir()
    with log_capture.at_level('INFO', logger='cvpack'):
        assert build_evaluator(cfg)(instances, str(out))['records_skipped'] == 1
    assert skipped_line in log_capture.text
    assert main([str(bad), str(out / 'results.json'), '--pckh']) == 0
    printed = capsys.readouterr().out
    assert skipped_line in printed and 'MPII PCKh@0.5 (head size: head_segment)' in printed
    assert main([str(bad), str(out / 'results.json'), '--pckh', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['skipped_records'] == [2]
    for e in entries:                    # no record with a head segment: no table, an error asking for head boxes
        e['joints_vis'][8] = 0
    bad.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r'none of the 5 records scored of .*valid\.json has a head segment'):
        evaluate_pckh(preds, str(bad))


def _mat(path, **fields):
    from scipy.io import savemat
    joints = np.zeros((16, 2, 2))
    joints[:, 0, :] = np.arange(16)[:, None] * 10 + 1
    boxes = np.zeros((2, 2, 2))
    boxes[1, :, 0], boxes[1, :, 1] = [30, 40], [6, 8]
    mat = {'pos_gt_src': joints, 'jnt_missing': np.zeros((16, 2)), 'headboxes_src': boxes}
    for key, edit in fields.items():
        if edit is None:
            del mat[key]
        else:
            edit(mat[key])
    savemat(str(path), mat)
    return str(path)


def test_bad_gt_valid_mat_names_file_record_and_field(tmp_path):
    """gt_valid.mat was read unchecked: a NaN head box made its record's 16 joints misses (Mean 100 -> 50 for GT as
    predictions), a NaN joint one miss, silently; a missing field was a bare KeyError 'headboxes_src' and a cut
    file scipy's 'Mat file appears to be truncated', neither naming the file."""
    good = _mat(tmp_path / 'good.mat')
    preds = load_mpii_gt(good)['joints']
    assert evaluate_pckh(preds, good)['Mean'] == pytest.approx(100.0)
    cases = [
        (dict(headboxes_src=lambda b: b.__setitem__((1, 0, 1), np.nan)),
         r'record 1: headboxes_src is \[0\.0, 0\.0, nan, 8\.0\], not finite'),
        (dict(pos_gt_src=lambda j: j.__setitem__((3, 0, 1), np.nan)),
         r'record 1: pos_gt_src of joint 3 is \[nan, 0\.0\], not finite \(and jnt_missing is 0\)'),
        (dict(jnt_missing=lambda m: m.__setitem__((4, 0), 2)),
         r'record 0: jnt_missing of joint 4 is 2, expected 0 or 1'),
        (dict(headboxes_src=None), r"no 'headboxes_src' field"),
    ]
    for n, (edit, message) in enumerate(cases):
        path = _mat(tmp_path / ('bad%d.mat' % n), **edit)
        with pytest.raises(ValueError, match=re.escape(path) + ': ' + message):
            evaluate_pckh(preds, path)
    # a NaN coordinate of a missing joint is never read
    path = _mat(tmp_path / 'missing_nan.mat', pos_gt_src=lambda j: j.__setitem__((3, 0, 1), np.nan),
                jnt_missing=lambda m: m.__setitem__((3, 1), 1))
    assert evaluate_pckh(np.nan_to_num(load_mpii_gt(path)['joints']), path)['Mean'] == pytest.approx(100.0)
    cut = tmp_path / 'cut.mat'
    with open(good, 'rb') as f:
        cut.write_bytes(f.read()[:200])
    with pytest.raises(ValueError, match=r'MPII ground truth file %s is not a readable \.mat' % re.escape(str(cut))):
        evaluate_pckh(preds, str(cut))


def test_head_boxes_on_some_records_only_is_an_error(tmp_path, valid_json):
    """Head boxes on 4 of 5 records: all 4 were dropped and every record normalised by its head segment, with only
    'head size: head_segment' in the log. Now the file is refused, naming the first record without one."""
    with open(valid_json) as f:
        entries = json.load(f)
    for e in entries:
        x, y = e['joints'][9]
        e['headbox'] = [[x - 30, y - 40], [x + 30, y + 40]]       # diagonal 100 -> head size 60
    path = tmp_path / 'valid.json'
    path.write_text(json.dumps(entries))
    gt = load_mpii_gt(str(path))
    assert gt['head_source'] == 'boxes'
    np.testing.assert_allclose(gt['head_sizes'], 60.0)
    del entries[3]['headbox']
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r'valid\.json: record 3 has no headbox, but 4 of 5 records have one'):
        load_mpii_gt(str(path))


def test_check_ground_truth_refuses_records_scored_without_a_head_segment(tmp_path, valid_json):
    """The evaluator's start-up check (check_ground_truth: test.py before the first batch, training before the first
    iteration) read the file only: with TEST.MAX_IMAGES taking records that all lack a head segment, the error
    came after the whole inference (training: at its first evaluation). Other records lacking one are fine."""
    entries = json.loads(open(valid_json).read())
    entries[2]['joints_vis'][9], entries[2]['joints'][9] = 0, [-1, -1]
    (tmp_path / 'valid.json').write_text(json.dumps(entries))
    cfg = edict(DATASET=edict(NAME='MPII', ROOT=str(tmp_path), VAL_ANN='valid.json', META_FILE='',
                              KEYPOINT=edict(NUM=16)), TEST=edict(EVALUATOR='', PCKH_GT=''))
    evaluator = build_evaluator(cfg)
    evaluator.check_ground_truth()                     # every record scored: 4 of 5 have a head segment
    evaluator.restrict_to(['img1', 'img2'], [1, 2])
    evaluator.check_ground_truth()
    evaluator.restrict_to(['img2'], [2])               # TEST.MAX_IMAGES: record 2 alone
    with pytest.raises(ValueError, match=r'none of the 1 records scored of .*valid\.json has a head segment'):
        evaluator.check_ground_truth()
    evaluator.restrict_to(['img9'], [9])               # not a record of the file
    with pytest.raises(ValueError, match=r'distinct indices of the 5 records of .*valid\.json, got \[9\]'):
        evaluator.check_ground_truth()


def _mat_of(gt, box_diagonals, path):
    """gt_valid.mat holding ``gt``'s records (1-based joints) with square-ish head boxes of the given diagonals."""
    from scipy.io import savemat
    n = len(gt['joints'])
    boxes = np.zeros((2, 2, n))
    boxes[1, 0, :], boxes[1, 1, :] = 0.6 * np.asarray(box_diagonals), 0.8 * np.asarray(box_diagonals)
    savemat(str(path), {'pos_gt_src': np.transpose(gt['joints'] + 1.0, [1, 2, 0]),
                        'jnt_missing': np.transpose(~gt['visible'], [1, 0]).astype(np.float64),
                        'headboxes_src': boxes})
    return str(path)


def _mpii_evaluator(root, pckh_gt=''):
    cfg = edict(DATASET=edict(NAME='MPII', ROOT=str(root), VAL_ANN='valid.json', META_FILE='',
                              KEYPOINT=edict(NUM=16)), TEST=edict(EVALUATOR='', PCKH_GT=pckh_gt))
    return build_evaluator(cfg)


def test_pckh_gt_gives_the_protocols_head_boxes_to_test_py(tmp_path, valid_json, log_capture):
    """HRNet's valid.json has no head boxes, so test.py normalised MPII PCKh by head segments (the log said
    'head size: head_segment' only): not the protocol of the papers (gt_valid.mat's head boxes), no way to get it.
    TEST.PCKH_GT names gt_valid.mat; without it the head segments are warned."""
    (tmp_path / 'valid.json').write_text(open(valid_json).read())
    gt = load_mpii_gt(valid_json)
    _mat_of(gt, [500.0] * 5, tmp_path / 'gt_valid.mat')     # head size 0.6 * 500 = 300 px
    preds = gt['joints'].copy()
    preds[..., 0] += 40.0             # 0.13 head sizes of the boxes; 0.68 of record 1's 59 px head segment
    instances = [{'index': i, 'image_id': 'img%d' % i, 'keypoints': np.concatenate([p, np.ones((16, 1))], 1)}
                 for i, p in enumerate(preds)]
    by_segment = evaluate_pckh(preds, valid_json)['Mean']
    assert by_segment == pytest.approx(100.0 * 52 / 66)      # record 1's 14 joints are misses

    evaluator = _mpii_evaluator(tmp_path, 'gt_valid.mat')
    with log_capture.at_level('WARNING', logger='cvpack'):
        evaluator.check_ground_truth()
    assert 'no head boxes' not in log_capture.text
    table = evaluator(instances, str(tmp_path))
    assert table['head_source'] == 'boxes' and table['Mean'] == pytest.approx(100.0)

    log_capture.clear()
    evaluator = _mpii_evaluator(tmp_path)
    with log_capture.at_level('WARNING', logger='cvpack'):
        evaluator.check_ground_truth()
    assert re.search(r'valid\.json has no head boxes: .* not comparable with published PCKh; set TEST\.PCKH_GT',
                     log_capture.text)
    table = evaluator(instances, str(tmp_path))
    assert table['head_source'] == 'head_segment' and table['Mean'] == pytest.approx(by_segment)


def test_pckh_gt_must_hold_the_records_of_val_ann_in_order(tmp_path, valid_json, log_capture):
    """A gt_valid.mat of other records, or in another order, scored each prediction against another person."""
    (tmp_path / 'valid.json').write_text(open(valid_json).read())
    gt = load_mpii_gt(valid_json)
    short = dict(gt, joints=gt['joints'][:4], visible=gt['visible'][:4])
    _mat_of(short, [50.0] * 4, tmp_path / 'short.mat')
    with pytest.raises(ValueError, match=r'TEST\.PCKH_GT .*short\.mat has 4 records, DATASET\.VAL_ANN .*valid\.json 5'):
        _mpii_evaluator(tmp_path, 'short.mat').check_ground_truth()
    order = [4, 3, 2, 1, 0]
    _mat_of(dict(gt, joints=gt['joints'][order], visible=gt['visible'][order]), [50.0] * 5, tmp_path / 'rev.mat')
    with pytest.raises(ValueError, match=r'4 of the 5 records .* more than 1 px .* not the same records in the same '
                                         r'order'):
        _mpii_evaluator(tmp_path, 'rev.mat').check_ground_truth()
    edited = gt['joints'].copy()
    edited[3, 9] += 5.0                                      # one annotation edited in one file only
    _mat_of(dict(gt, joints=edited), [50.0] * 5, tmp_path / 'edit.mat')
    with log_capture.at_level('WARNING', logger='cvpack'):
        _mpii_evaluator(tmp_path, 'edit.mat').check_ground_truth()
    assert re.search(r'1 of the 5 records .* \(records 3\): those records are scored against', log_capture.text)


@pytest.mark.parametrize('extra', [['--dataset', 'COCO'], ['--meta-file', 'my_meta.json']])
def test_pckh_flag_refuses_another_dataset(extra, valid_json, capsys):
    """``--pckh --dataset COCO`` / ``--meta-file F`` were ignored: MPII's 16-joint PCKh was printed as if it were
    the other dataset's. Now a usage error (exit 2) before any file is read; ``--dataset MPII`` stays accepted."""
    from cvpack.evaluation.__main__ import main
    with pytest.raises(SystemExit) as exc:
        main([valid_json, 'results.json', '--pckh'] + extra)
    assert exc.value.code == 2
    assert '--pckh scores MPII (16 joints) only; it takes no --meta-file and no --dataset other than MPII (got %s)' \
        % ' '.join(extra) in capsys.readouterr().err
    assert main([valid_json, 'missing.json', '--pckh', '--dataset', 'mpii']) == 2          # read, and not found
    assert 'missing.json' in capsys.readouterr().err
