"""COCO keypoint AP/AR through pycocotools, with validation of the ground truth and the results before pycocotools
sees them (both through :mod:`cvpack.data.validate`)."""
import contextlib
import io
import logging

import numpy as np

from ..data.validate import numbers, read_json, validate_coco_gt, validate_keypoint_results

STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
logger = logging.getLogger(__name__)


def _quiet():
    """pycocotools prints progress; keep stdout clean (the CLI's --json prints one object)."""
    return contextlib.redirect_stdout(io.StringIO())


def _num_keypoints(coco_gt):
    cats = [c for c in coco_gt.dataset.get('categories', []) if c.get('id') == 1 and 'keypoints' in c]
    return len(cats[0]['keypoints']) if cats else None


def load_coco_gt(gt):
    """A validated ``pycocotools.coco.COCO`` from a path or an existing COCO object.

    The file is read and checked by :func:`cvpack.data.validate.validate_coco_gt` before pycocotools sees it
    (a NaN keypoint would otherwise *match* detections and raise AP): errors name the file, the annotation id
    and the field; a missing file, a folder or truncated JSON is named too.
    """
    from pycocotools.coco import COCO
    if isinstance(gt, COCO):
        _validate_gt(gt.dataset, '<COCO object>')
        return gt
    data = read_json(gt, 'COCO ground truth')
    _validate_gt(data, str(gt))
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


def _validate_gt(data, name):
    cats = data.get('categories') if isinstance(data, dict) else None
    persons = [c for c in cats if isinstance(c, dict) and c.get('id') == 1] if isinstance(cats, list) else []
    if cats is not None and not (persons and isinstance(persons[0].get('keypoints'), list)):
        raise ValueError('%s: no person category (id 1) with a "keypoints" list: not a COCO keypoint file' % name)
    num_kp = len(persons[0]['keypoints']) if persons else 0
    validate_coco_gt(data, name, num_kp, required=('area', 'num_keypoints'))   # pycocotools reads both
    for ann in data['annotations']:     # pycocotools stores matched GT ids in float arrays
        if isinstance(ann['id'], str):
            raise ValueError('%s: annotation id %r is a str: pycocotools needs int annotation ids (image ids may be '
                             'str)' % (name, ann['id']))


def load_results(results):
    """Results as a list plus a name for error messages (the file path, or '<results list>')."""
    if isinstance(results, (list, tuple)):
        return list(results), '<results list>'
    path = str(results)
    data = read_json(path, 'COCO results')
    if not isinstance(data, list):
        raise ValueError('%s: COCO results must be a JSON list of records, got %s' % (path, type(data).__name__))
    return data, path


def validate_results(records, coco_gt, name='<results list>'):
    """Check every record before evaluation; raise ValueError naming ``name``, the record index and the field.

    Each record needs image_id (an image of the GT), category_id, keypoints (3 * K finite numbers,
    K from the GT person category; not strings, not booleans) and a finite numeric score (not a boolean).
    Shares its number checks with the ground-truth validation (:mod:`cvpack.data.validate`).
    """
    validate_keypoint_results(records, name, set(coco_gt.getImgIds()), set(coco_gt.getCatIds()),
                              _num_keypoints(coco_gt))


def evaluate_keypoints(gt, results, sigmas=None, verbose=False, image_ids=None):
    """COCO keypoint evaluation (pycocotools ``COCOeval(..., 'keypoints')``).

    Args:
        gt: path of a COCO keypoint annotation file, or a ``pycocotools.coco.COCO``.
        results: list of ``{image_id, category_id, keypoints: [x, y, s] * K, score}`` or a JSON path.
        sigmas: per-keypoint OKS sigmas (real scale, e.g. 0.026 for the COCO nose); None = COCO's.
        verbose: let pycocotools print its summary.
        image_ids: evaluate these images only (TEST.MAX_IMAGES, CrowdPose's easy / medium / hard images); None =
            every image of ``gt``.

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
        if image_ids is not None:
            coco_eval.params.imgIds = sorted(image_ids)
        num_kp = _num_keypoints(coco_gt)
        if sigmas is None and num_kp not in (None, 17):
            raise ValueError('%d keypoints in the ground truth: give the OKS sigmas of its dataset (COCO has 17)'
                             % num_kp)
        if sigmas is not None:
            # a NaN sigma makes every OKS NaN, which pycocotools counts as a match (AP 0.179 -> 0.695)
            sigmas = np.asarray(numbers(np.asarray(sigmas, np.float64), 'OKS sigmas', 'sigmas'), np.float64)
            if num_kp is not None and sigmas.size != num_kp:
                raise ValueError('%d OKS sigmas for %d keypoints' % (sigmas.size, num_kp))
            if (sigmas <= 0).any():
                i = int(np.nonzero(sigmas <= 0)[0][0])
                raise ValueError('OKS sigmas: sigmas[%d] is %g, not > 0' % (i, sigmas[i]))
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


def instances_to_coco_results(instances, category_id=1, with_bbox=False):
    """Predictor instances -> COCO results records (keypoints flattened, plain floats); ``with_bbox``: also each
    instance's 'bbox' (xywh), which pycocotools then uses for the detection's area (Detectron2's results)."""
    out = []
    for inst in instances:
        kps = np.asarray(inst['keypoints'], dtype=np.float64).reshape(-1)
        image_id = inst['image_id']
        rec = {'image_id': int(image_id) if isinstance(image_id, (np.integer,)) else image_id,
               'category_id': category_id,
               'keypoints': [float(v) for v in kps],
               'score': float(inst['score'])}
        if with_bbox:
            rec['bbox'] = [float(v) for v in inst['bbox']]
        out.append(rec)
    return out
