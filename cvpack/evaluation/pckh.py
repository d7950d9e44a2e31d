"""MPII PCKh (HRNet / Megvii ``MPIIDataset.evaluate``, ``docs/reference/rsn_mspn.md`` §3.3), with the 0.1 fix.

Joint order is MPII's (``cvpack.data.meta.MPII``): 0 r-ankle, 1 r-knee, 2 r-hip, 3 l-hip, 4 l-knee,
5 l-ankle, 6 pelvis, 7 thorax, 8 upper neck, 9 head top, 10 r-wrist, 11 r-elbow, 12 r-shoulder,
13 l-shoulder, 14 l-elbow, 15 l-wrist. Pelvis and thorax are excluded as in the original.

Head size (the PCKh normaliser):
  * with head boxes (``gt_valid.mat``'s ``headboxes_src`` or a record's ``headbox``):
    ``0.6 * ||box diagonal||`` exactly as the original (SC_BIAS = 0.6);
  * without them (the HRNet-format json shipped here has none): ``||head_top - upper_neck||``, the
    "head segment length" that PCKh is defined on (Andriluka et al., CVPR 2014); 0.6 x the box
    diagonal is the toolkit's estimate of that same length from the box. Numbers computed this way
    are close to, but not the same as, official PCKh; the evaluator reports which was used. A record whose
    head top or upper neck is not labelled has no head segment: it is left out of the table, with a warning
    naming the records and a line under the table counting them (test.py reads the records from the same json,
    so refusing the file would leave no way to evaluate it; head boxes score every record).
"""
import logging
import os.path as osp

import numpy as np

from ..data.validate import flatten_pairs, mpii_joints, numbers, read_json

SC_BIAS = 0.6
HEAD_TOP, UPPER_NECK = 9, 8
EXCLUDED = (6, 7)  # pelvis, thorax
ROWS = (('Head', (9,)), ('Shoulder', (12, 13)), ('Elbow', (11, 14)), ('Wrist', (10, 15)),
        ('Hip', (2, 3)), ('Knee', (1, 4)), ('Ankle', (0, 5)))
TABLE_NAMES = tuple(name for name, _ in ROWS) + ('Mean', 'Mean@0.1')

logger = logging.getLogger(__name__)


def head_sizes_from_boxes(boxes):
    """(N, 4) [x1, y1, x2, y2] or (N, 2, 2) head boxes -> (N,) 0.6 * diagonal."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return SC_BIAS * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)


def head_sizes_from_joints(joints):
    """(N, 16, 2) joints -> (N,) ||head_top - upper_neck|| (fallback without head boxes)."""
    joints = np.asarray(joints, dtype=np.float64)
    return np.linalg.norm(joints[:, HEAD_TOP, :2] - joints[:, UPPER_NECK, :2], axis=1)


def load_mpii_gt(path):
    """Ground truth for PCKh from HRNet's ``valid.json`` (list of records) or ``gt_valid.mat``.

    Returns dict: joints (N, 16, 2) **0-based** image pixels (the json/mat are 1-based, MATLAB),
    visible (N, 16) bool, head_sizes (N,), head_source ('boxes' or 'head_segment'), no_head (indices of the
    records without head boxes whose head top or upper neck is unlabelled: head size NaN, left out of PCKh).
    """
    path = str(path)
    if path.endswith('.mat'):
        return _load_mat(path)
    records = read_json(path, 'MPII ground truth')
    if not isinstance(records, list):
        raise ValueError('%s: expected a list of MPII records {joints, joints_vis, ...}' % path)
    joints, visible, boxes = [], [], []
    for i, rec in enumerate(records):   # the loaders' checks (cvpack.data.validate): file, record, field
        where = '%s: record %d' % (path, i)
        if not isinstance(rec, dict) or 'joints' not in rec or 'joints_vis' not in rec:
            raise ValueError('%s has no joints/joints_vis' % where)
        j, v = mpii_joints(rec, where, 16)
        joints.append(j - 1.0)
        visible.append(v > 0)
        boxes.append(None if rec.get('headbox') is None
                     else numbers(flatten_pairs(rec['headbox']), where, 'headbox', length=4))
    joints, visible = np.stack(joints), np.stack(visible)
    without = [i for i, b in enumerate(boxes) if b is None]
    if 0 < len(without) < len(boxes):   # one normaliser for all: the given boxes would be dropped silently
        raise ValueError('%s: record %d has no headbox, but %d of %d records have one: give every record a headbox '
                         '(or none, for head segments)' % (path, without[0], len(boxes) - len(without), len(boxes)))
    if not without:
        return {'joints': joints, 'visible': visible, 'head_sizes': head_sizes_from_boxes(boxes),
                'head_source': 'boxes', 'no_head': []}
    # an unlabelled head top or neck has placeholder coordinates ([-1, -1] in HRNet's files): its "segment" would
    # be hundreds of pixels long and every joint of the record a hit (Mean 21.2 -> 38.5), so it has no head size
    no_head = np.nonzero(~visible[:, [HEAD_TOP, UPPER_NECK]].all(axis=1))[0]
    sizes = head_sizes_from_joints(joints)
    sizes[no_head] = np.nan
    return {'joints': joints, 'visible': visible, 'head_sizes': sizes, 'head_source': 'head_segment',
            'no_head': no_head.tolist()}


def _load_mat(path):
    """``gt_valid.mat`` (HRNet's ``pos_gt_src`` (16, 2, N), ``jnt_missing`` (16, N), ``headboxes_src`` (2, 2, N)),
    checked: an unreadable file, a missing field, a wrong shape, ``jnt_missing`` not 0/1, a NaN/inf head box or
    visible joint is a ValueError naming the file, the record (column) and the field (a NaN head box made its
    record's joints misses, silently)."""
    from scipy.io import loadmat
    if not osp.isfile(path):
        raise FileNotFoundError('MPII ground truth file not found: %s' % path)
    try:
        mat = loadmat(path)
    except Exception as e:   # scipy's MatReadError, ValueError, ...: the file is not a readable .mat
        raise ValueError('MPII ground truth file %s is not a readable .mat file: %s' % (path, e)) from None
    arrays, num = {}, None
    for key, lead in (('pos_gt_src', (16, 2)), ('jnt_missing', (16,)), ('headboxes_src', (2, 2))):
        if key not in mat:
            raise ValueError('%s: no %r field (gt_valid.mat has pos_gt_src, jnt_missing, headboxes_src)' % (path, key))
        try:
            arr = np.asarray(mat[key], np.float64)
        except (TypeError, ValueError):
            raise ValueError('%s: %s is not a numeric array' % (path, key)) from None
        if arr.shape == lead:   # MATLAB drops a trailing singleton dimension: one record
            arr = arr[..., None]
        num = arr.shape[-1] if num is None else num
        if arr.shape != lead + (num,):
            raise ValueError('%s: %s has shape %s, expected %s (N = %d records, as pos_gt_src)'
                             % (path, key, arr.shape, lead + ('N',), num))
        arrays[key] = arr
    missing = arrays['jnt_missing']
    if not np.isin(missing, (0, 1)).all():
        j, i = np.argwhere(~np.isin(missing, (0, 1)))[0]
        raise ValueError('%s: record %d: jnt_missing of joint %d is %g, expected 0 or 1' % (path, i, j, missing[j, i]))
    joints = np.transpose(arrays['pos_gt_src'], [2, 0, 1]) - 1.0          # (16, 2, N) -> (N, 16, 2)
    visible = np.transpose(missing == 0, [1, 0])
    boxes = np.transpose(arrays['headboxes_src'], [2, 0, 1])              # (2, 2, N) -> (N, 2, 2)
    bad = ~np.isfinite(boxes).all(axis=(1, 2))
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ValueError('%s: record %d: headboxes_src is %s, not finite' % (path, i, boxes[i].ravel().tolist()))
    bad = ~np.isfinite(joints).all(axis=2) & visible      # a missing joint's coordinates are never read
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError('%s: record %d: pos_gt_src of joint %d is %s, not finite (and jnt_missing is 0)'
                         % (path, i, j, (joints[i, j] + 1).tolist()))
    return {'joints': joints, 'visible': visible, 'head_sizes': head_sizes_from_boxes(boxes), 'head_source': 'boxes',
            'no_head': []}


def _pck(scaled_err, visible, thresh):
    """Per-joint PCK (%) over visible joints; NaN for a joint never visible."""
    hits = ((scaled_err <= thresh) & visible).sum(axis=0)
    count = visible.sum(axis=0)
    with np.errstate(invalid='ignore', divide='ignore'):
        return 100.0 * hits / count, count


def pckh_table(preds, joints, visible, head_sizes, thresh=0.5):
    """PCKh table.

    Args:
        preds, joints: (N, 16, >=2) predictions and GT in the same image frame.
        visible: (N, 16) GT joints to count. head_sizes: (N,) normalisers (see module doc).

    Returns:
        dict Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle (mean of left/right), Mean (joint-count
        weighted over the 14 non-excluded joints, as the original), Mean@0.1 (threshold 0.1; the
        original used 0.11, docs/reference/defects.md R#17), and 'per_joint' (16,) PCKh at ``thresh``.
    """
    preds = np.asarray(preds, dtype=np.float64)[..., :2]
    joints = np.asarray(joints, dtype=np.float64)[..., :2]
    if preds.shape != joints.shape:
        raise ValueError('PCKh: predictions %s and ground truth %s differ in shape' % (preds.shape, joints.shape))
    visible = np.asarray(visible, dtype=bool)
    head_sizes = np.asarray(head_sizes, dtype=np.float64)
    if np.any(head_sizes <= 0):
        bad = int(np.nonzero(head_sizes <= 0)[0][0])
        raise ValueError('PCKh: record %d has head size %g (head top = upper neck?)' % (bad, head_sizes[bad]))
    scaled = np.linalg.norm(preds - joints, axis=2) / head_sizes[:, None]
    pck, count = _pck(scaled, visible, thresh)
    pck01, _ = _pck(scaled, visible, 0.1)
    used = np.ones(16, dtype=bool)
    used[list(EXCLUDED)] = False
    weights = np.where(used, count, 0).astype(np.float64)
    weights /= max(weights.sum(), 1.0)
    table = {name: float(np.mean(pck[list(ids)])) for name, ids in ROWS}
    table['Mean'] = float(np.nansum(pck * weights))
    table['Mean@0.1'] = float(np.nansum(pck01 * weights))
    table['per_joint'] = pck.tolist()
    return table


def format_pckh(table, title=None):
    """The table's rows, then a line counting the records left out (no head segment), if any."""
    head = ' | '.join('%8s' % k for k in TABLE_NAMES)
    vals = ' | '.join('%8.3f' % table[k] for k in TABLE_NAMES)
    return '\n'.join(([title] if title else []) + [head, vals] + _skipped_line(table))


def _first_ten(ids):
    """'3, 7, 9' or '0, 1, ..., 9 ...': the record indices a message names."""
    ids = list(ids)
    return ', '.join(str(i) for i in ids[:10]) + (' ...' if len(ids) > 10 else '')


def _skipped_line(table):
    skipped = table.get('skipped_records') or []
    if not skipped:
        return []
    return ['%d of %d records left out: no head segment (head top or upper neck not labelled, no head boxes): '
            'records %s' % (len(skipped), table['records'], _first_ten(skipped))]


def evaluate_pckh(preds, gt_path, records=None):
    """PCKh@0.5 of predictions (N, 16, >=2), 0-based image pixels in annotation order, against ``gt_path``
    (``records``: the indices of the annotation records predicted, e.g. TEST.MAX_IMAGES; None = all).

    Records without a head segment (no head boxes, head top or upper neck unlabelled) are left out with a
    warning; the table counts them (``records``, ``records_skipped``, ``skipped_records``: file indices)."""
    gt, ids = _records_scored(load_mpii_gt(gt_path), gt_path, records)
    preds = np.asarray(preds, dtype=np.float64)
    if preds.shape[0] != len(ids):
        raise ValueError('PCKh: %d predictions for %d records in %s' % (preds.shape[0], len(ids), gt_path))
    if not np.all(np.isfinite(preds[..., :2])):
        bad = int(np.nonzero(~np.isfinite(preds[..., :2]).all(axis=(1, 2)))[0][0])
        raise ValueError('PCKh: prediction %d (record %d of %s) has NaN/inf' % (bad, ids[bad], gt_path))
    keep = np.isfinite(gt['head_sizes'])     # NaN: no head segment (load_mpii_gt's no_head)
    skipped = ids[~keep].tolist()
    _check_skipped(skipped, len(ids), gt_path)
    table = pckh_table(preds[keep], gt['joints'][keep], gt['visible'][keep], gt['head_sizes'][keep])
    table.update(head_source=gt['head_source'], records=len(ids), records_skipped=len(skipped),
                 skipped_records=skipped)
    return table


def _records_scored(gt, gt_path, records):
    """(gt restricted to ``records``, their indices); the indices must be distinct records of the file."""
    n = len(gt['joints'])
    ids = np.arange(n) if records is None else np.asarray(records, dtype=np.int64).reshape(-1)
    if len(np.unique(ids)) != len(ids) or ((ids < 0) | (ids >= n)).any():
        raise ValueError('PCKh: the records scored must be distinct indices of the %d records of %s, got %s%s'
                         % (n, gt_path, ids[:10].tolist(), ' ...' if len(ids) > 10 else ''))
    return dict(gt, **{k: gt[k][ids] for k in ('joints', 'visible', 'head_sizes')}), ids


def check_pckh_gt(gt_path, records=None):
    """Validate ``gt_path`` as :func:`evaluate_pckh` reads it, before any prediction (the evaluator's
    ``check_ground_truth``): errors name the file, record and field; the records scored (``records``) must be
    indices of the file, and one of them at least must have a head segment (else there would be no table).
    Returns the whole file as :func:`load_mpii_gt` reads it (the evaluator's other checks use it)."""
    whole = load_mpii_gt(gt_path)
    gt, ids = _records_scored(whole, gt_path, records)
    if len(ids) and not np.isfinite(gt['head_sizes']).any():
        _none_scored(len(ids), gt_path)
    return whole


def _none_scored(total, gt_path):
    raise ValueError('PCKh: none of the %d records scored of %s has a head segment (head top and upper neck '
                     'labelled): give head boxes (a "headbox" per record, or gt_valid.mat)' % (total, gt_path))


def _check_skipped(skipped, total, gt_path):
    """A warning naming the records left out (a count alone would not let the user find them); all of them
    left out is an error: there would be no table."""
    if not skipped:
        return
    if len(skipped) == total:
        _none_scored(total, gt_path)
    logger.warning('%s: %d of the %d records scored have no head segment (head top or upper neck not labelled) and '
                   'are left out of PCKh: records %s; head boxes (a "headbox" per record, or gt_valid.mat) score '
                   'them', gt_path, len(skipped), total, _first_ten(skipped))


def check_same_records(records_path, pckh_path, pckh_gt=None, tol=1.0):
    """``pckh_path`` (TEST.PCKH_GT, gt_valid.mat; ``pckh_gt``: that file as already read) must hold the records of
    ``records_path`` (VAL_ANN: the order test.py predicts in) in the same order, else each prediction would be
    scored against another person: another record count is an error; joints labelled in both that differ by more
    than ``tol`` px are an error when most records differ (another file or order), else a warning naming them (an
    annotation edited in one file only)."""
    mine = load_mpii_gt(records_path)
    theirs = pckh_gt if pckh_gt is not None else load_mpii_gt(pckh_path)
    if len(mine['joints']) != len(theirs['joints']):
        raise ValueError('TEST.PCKH_GT %s has %d records, DATASET.VAL_ANN %s %d: PCKh needs the same records in the '
                         'same order' % (pckh_path, len(theirs['joints']), records_path, len(mine['joints'])))
    both = mine['visible'] & theirs['visible']
    far = (np.abs(mine['joints'] - theirs['joints']).max(axis=2) > tol) & both
    differ = np.nonzero(far.any(axis=1))[0]
    if not len(differ):
        return
    text = ('%d of the %d records of DATASET.VAL_ANN %s have joints more than %g px from those of TEST.PCKH_GT %s '
            '(records %s)' % (len(differ), len(far), records_path, tol, pckh_path, _first_ten(differ.tolist())))
    if 2 * len(differ) > len(far):
        raise ValueError(text + ': not the same records in the same order')
    logger.warning('%s: those records are scored against TEST.PCKH_GT\'s joints', text)


def warn_if_head_segments(path, gt=None):
    """A warning when ``path`` (``gt``: that file as already read) has no head boxes: PCKh is then normalised by
    head segments, which is not the MPII protocol (head boxes, docs/reference/rsn_mspn.md), so its numbers are not
    comparable with published ones."""
    if (gt if gt is not None else load_mpii_gt(path))['head_source'] == 'head_segment':
        logger.warning('%s has no head boxes: PCKh is normalised by each person\'s head segment (head top to upper '
                       'neck), not by the MPII protocol\'s head boxes, so it is not comparable with published PCKh; '
                       'set TEST.PCKH_GT to gt_valid.mat (below DATASET.ROOT) for the protocol', path)
