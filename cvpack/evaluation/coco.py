"""COCO keypoint AP/AR through pycocotools, with validation of the results before pycocotools sees them."""
import contextlib
import io
import json
import logging
import math

import numpy as np

STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
logger = logging.getLogger(__name__)


def _quiet():
    """pycocotools prints progress; keep stdout clean (the CLI's --json prints one object)."""
    return contextlib.redirect_stdout(io.StringIO())


def load_coco_gt(gt):
    """A ``pycocotools.coco.COCO`` from a path (loaded quietly) or an existing COCO object."""
    from pycocotools.coco import COCO
    if isinstance(gt, COCO):
        return gt
    with _quiet():
        try:
            return COCO(str(gt))
        except FileNotFoundError:
            raise FileNotFoundError('COCO ground truth not found: %s' % gt) from None


def _num_keypoints(coco_gt):
    cats = [c for c in coco_gt.dataset.get('categories', []) if c.get('id') == 1 and 'keypoints' in c]
    return len(cats[0]['keypoints']) if cats else None


def load_results(results):
    """Results as a list plus a name for error messages (the file path, or '<results list>')."""
    if isinstance(results, (list, tuple)):
        return list(results), '<results list>'
    path = str(results)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError('COCO results file not found: %s' % path) from None
    except json.JSONDecodeError as e:
        raise ValueError('%s: not valid JSON (%s)' % (path, e)) from None
    if not isinstance(data, list):
        raise ValueError('%s: COCO results must be a JSON list of records, got %s' % (path, type(data).__name__))
    return data, path


def validate_results(records, coco_gt, name='<results list>'):
    """Check every record before evaluation; raise ValueError naming ``name`` and the record index.

    Each record needs image_id (an image of the GT), category_id, keypoints (3 * K finite numbers,
    K from the GT person category) and a finite score.
    """
    num_kp = _num_keypoints(coco_gt)
    image_ids = set(coco_gt.getImgIds())
    category_ids = set(coco_gt.getCatIds())
    for i, rec in enumerate(records):
        where = '%s: record %d' % (name, i)
        if not isinstance(rec, dict):
            raise ValueError('%s is a %s, not a dict' % (where, type(rec).__name__))
        missing = [k for k in ('image_id', 'category_id', 'keypoints', 'score') if k not in rec]
        if missing:
            raise ValueError('%s lacks field(s) %s' % (where, ', '.join(missing)))
        if rec['image_id'] not in image_ids:
            raise ValueError('%s has image_id %r, which is not an image of the ground truth'
                             % (where, rec['image_id']))
        if rec['category_id'] not in category_ids:
            raise ValueError('%s has category_id %r; the ground truth has %s'
                             % (where, rec['category_id'], sorted(category_ids)))
        kps = rec['keypoints']
        try:
            kps = np.asarray(kps, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError('%s: keypoints are not numbers' % where) from None
        if num_kp is not None and kps.size != 3 * num_kp:
            raise ValueError('%s: keypoints has %d values, expected %d (= 3 x %d keypoints)'
                             % (where, kps.size, 3 * num_kp, num_kp))
        if kps.size % 3 or not np.all(np.isfinite(kps)):
            raise ValueError('%s: keypoints contain NaN/inf or are not (x, y, score) triples' % where)
        score = rec['score']
        if not isinstance(score, (int, float, np.floating, np.integer)) or not math.isfinite(float(score)):
            raise ValueError('%s: score %r is not a finite number' % (where, score))


def evaluate_keypoints(gt, results, sigmas=None, verbose=False):
    """COCO keypoint evaluation (pycocotools ``COCOeval(..., 'keypoints')``).

    Args:
        gt: path of a COCO keypoint annotation file, or a ``pycocotools.coco.COCO``.
        results: list of ``{image_id, category_id, keypoints: [x, y, s] * K, score}`` or a JSON path.
        sigmas: per-keypoint OKS sigmas (real scale, e.g. 0.026 for the COCO nose); None = COCO's.
        verbose: let pycocotools print its summary.

    Returns:
        dict with float values for AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl. An empty result
        list gives all zeros (nothing was detected) and a warning, rather than pycocotools' IndexError.
    """
    from pycocotools.cocoeval import COCOeval
    coco_gt = load_coco_gt(gt)
    records, name = load_results(results)
    if not records:
        logger.warning('%s: no keypoint results; every metric is 0', name)
        return {k: 0.0 for k in STAT_NAMES}
    validate_results(records, coco_gt, name)
    records = [dict(r, keypoints=[float(v) for v in np.asarray(r['keypoints'], np.float64).ravel()])
               for r in records]
    with contextlib.ExitStack() as stack:
        if not verbose:
            stack.enter_context(_quiet())
        coco_dt = coco_gt.loadRes(records)
        coco_eval = COCOeval(coco_gt, coco_dt, 'keypoints')
        if sigmas is not None:
            sigmas = np.asarray(sigmas, dtype=np.float64).ravel()
            num_kp = _num_keypoints(coco_gt)
            if num_kp is not None and sigmas.size != num_kp:
                raise ValueError('%d OKS sigmas for %d keypoints' % (sigmas.size, num_kp))
            coco_eval.params.kpt_oks_sigmas = sigmas
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {k: float(v) for k, v in zip(STAT_NAMES, coco_eval.stats)}


def format_table(stats, title=None):
    """The 10 COCO numbers as a two-line table (names, then values with 4 decimals)."""
    head = ' | '.join('%6s' % k for k in STAT_NAMES)
    vals = ' | '.join('%6.4f' % stats[k] for k in STAT_NAMES)
    lines = ([title] if title else []) + [head, vals]
    return '\n'.join(lines)


def instances_to_coco_results(instances, category_id=1):
    """Predictor instances -> COCO results records (keypoints flattened, plain floats)."""
    out = []
    for inst in instances:
        kps = np.asarray(inst['keypoints'], dtype=np.float64).reshape(-1)
        image_id = inst['image_id']
        out.append({'image_id': int(image_id) if isinstance(image_id, (np.integer,)) else image_id,
                    'category_id': category_id,
                    'keypoints': [float(v) for v in kps],
                    'score': float(inst['score'])})
    return out
