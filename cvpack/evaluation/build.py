"""``build_evaluator(cfg)``: NMS + results file + metrics for the dataset of ``cfg``."""
import json
import logging
import os.path as osp

import numpy as np

from .coco import STAT_NAMES, evaluate_keypoints, format_table, instances_to_coco_results, load_coco_gt
from ..data.meta_file import dataset_meta
from ..data.validate import read_json
from ..fileio import atomic_output
from ..utils import import_target
from .datasets import crowd_index_split, drop_in_ignore_regions, prepare_gt
from .nms import nms_per_image
from .pckh import TABLE_NAMES, check_pckh_gt, check_same_records, evaluate_pckh, format_pckh, warn_if_head_segments

logger = logging.getLogger(__name__)  # reaches the test log (console + TEST_DIR/test_log.txt)


def write_json(obj, path):
    """Write ``obj`` as JSON atomically (a temporary file, then ``os.replace``): a reader never sees half a file."""
    with atomic_output(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(obj, f)


def _area(inst):
    if 'area' in inst:
        return float(inst['area'])
    bbox = np.asarray(inst['bbox'], dtype=np.float64)  # xywh
    return float(bbox[2] * bbox[3])


def apply_test_nms(cfg, instances):
    """cfg.TEST.NMS ('none' | 'oks' | 'soft_oks', TEST.NMS_THRESH) per image on predictor instances, with the
    instance areas OKS uses; the COCO evaluator and ``cvpack.apis`` share it. Returns the kept instances."""
    insts = [dict(i, area=_area(i)) for i in instances]
    return nms_per_image(insts, cfg.TEST.NMS, float(cfg.TEST.NMS_THRESH),
                         np.asarray(dataset_meta(cfg).sigmas, np.float64))


class CocoEvaluator:
    """COCO-style keypoints (COCO, CrowdPose, OCHuman, AIC, PoseTrack18, user metadata): cfg.TEST.NMS ('none' |
    'oks' | 'soft_oks', NMS_THRESH) per image, results.json, AP/AR with the dataset's OKS sigmas.

    The instance scores come from the predictor (cfg.TEST.RESCORE is applied there). Per dataset
    (:mod:`cvpack.evaluation.datasets`): predictions in PoseTrack18's ignore regions are dropped; CrowdPose adds
    AP_easy / AP_medium / AP_hard (images split by crowdIndex; -1.0 when a split has no image).

    ``with_bbox``: results.json carries each instance's ``bbox`` (xywh), as Detectron2's keypoint results do; then
    pycocotools takes a detection's area from its box (not from its keypoints' extent), which decides whether an
    unmatched detection counts in the medium / large ranges (APm, APl, ARm, ARl; AP itself does not change).
    """

    def __init__(self, cfg, with_bbox=False):
        self.gt_path = osp.join(cfg.DATASET.ROOT, cfg.DATASET.VAL_ANN)
        self.cfg = cfg
        self.with_bbox = with_bbox
        self.meta = dataset_meta(cfg)
        self.nms = cfg.TEST.NMS
        self.box_source = 'GT boxes' if cfg.TEST.USE_GT_BBOX else 'detected boxes'
        self.image_ids = None   # restrict_to (TEST.MAX_IMAGES)

    def restrict_to(self, image_ids, indices):
        """Score only the images ``image_ids`` (the val samples ``indices`` were predicted: TEST.MAX_IMAGES)."""
        self.image_ids = list(image_ids)

    def metric_names(self):
        """The 10 COCO numbers, plus AP_easy / AP_medium / AP_hard for a dataset split by crowdIndex (CrowdPose)."""
        split = ['AP_easy', 'AP_medium', 'AP_hard'] if self.meta.extra.get('crowd_index_split') else []
        return list(STAT_NAMES) + split

    def check_ground_truth(self):
        """Read and validate DATASET.VAL_ANN as :meth:`__call__` does (errors name the file, annotation, field)."""
        load_coco_gt_for(self.gt_path, self.meta)

    def __call__(self, instances, output_dir):
        """instances: predictor dicts (image_id, keypoints (K, 3) image px, score, area/bbox).

        Writes ``output_dir/results.json`` (COCO results, sorted by image then score) and returns the
        dict AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl.
        """
        gt = load_coco_gt_for(self.gt_path, self.meta)
        kept = apply_test_nms(self.cfg, instances)
        if self.meta.extra.get('ignore_regions'):
            kept, dropped = drop_in_ignore_regions(kept, gt.imgs)
            logger.info('%d predictions in ignore regions dropped', dropped)
        results = instances_to_coco_results(kept, with_bbox=self.with_bbox)
        results.sort(key=lambda r: (r['image_id'], -r['score']))
        path = osp.join(output_dir, 'results.json')
        write_json(results, path)
        stats = score_keypoints(gt, path, self.meta, image_ids=self.image_ids)
        where = ' on the first %d images (TEST.MAX_IMAGES)' % len(self.image_ids) if self.image_ids else ''
        logger.info(format_table(stats, 'COCO keypoints (%s, NMS %s, %d of %d instances%s): %s'
                           % (self.box_source, self.nms, len(kept), len(instances), where, path)))
        return stats


def score_keypoints(gt, results, meta=None, image_ids=None):
    """AP/AR of ``results`` (a COCO results list or file) on ``gt`` (from :func:`load_coco_gt_for`) with
    ``meta``'s OKS sigmas (None: COCO's), on ``image_ids`` (None: all). A dataset split by crowdIndex (CrowdPose)
    adds AP_easy / AP_medium / AP_hard as crowdposetools (and mmpose through xtcocotools) computes them: the AP
    of each split's images, rounded to 4 decimals, -1.0 for a split with no image."""
    sigmas = np.asarray(meta.sigmas, np.float64) if meta is not None else None
    stats = evaluate_keypoints(gt, results, sigmas=sigmas, image_ids=image_ids)
    split = meta.extra.get('crowd_index_split') if meta is not None else None
    if split:
        images = gt.dataset['images']
        if image_ids is not None:
            keep = set(image_ids)
            images = [im for im in images if im['id'] in keep]
        for level, ids in crowd_index_split(images, split).items():
            stats['AP_' + level] = (round(evaluate_keypoints(gt, results, sigmas=sigmas, image_ids=ids)['AP'], 4)
                                    if ids else -1.0)
    return stats


def load_coco_gt_for(path, meta=None):
    """The GT as a validated pycocotools COCO, after :func:`prepare_gt` (area 0.53 * box for ``meta``'s with
    ``extra['fill_area']``)."""
    fill = bool(meta is not None and meta.extra.get('fill_area'))
    return load_coco_gt(_GtCoco(prepare_gt(read_json(path, 'COCO ground truth'), fill), path))


def _GtCoco(data, path):
    from pycocotools.coco import COCO
    from .coco import _quiet, _validate_gt
    _validate_gt(data, path)     # errors name the file (load_coco_gt would say '<COCO object>')
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


class MpiiEvaluator:
    """MPII PCKh: one instance per annotation record, ordered by the dataset 'index' of each sample; each
    instance has cfg.DATASET.KEYPOINT.NUM joints."""

    def __init__(self, cfg):
        self.gt_path = osp.join(cfg.DATASET.ROOT, cfg.DATASET.VAL_ANN)
        # the head sizes: TEST.PCKH_GT (gt_valid.mat: the MPII protocol's head boxes), else VAL_ANN's own
        pckh_gt = cfg.TEST.PCKH_GT
        self.pckh_path = osp.join(cfg.DATASET.ROOT, pckh_gt) if pckh_gt else self.gt_path
        self.num_joints = int(cfg.DATASET.KEYPOINT.NUM)
        self.records = None   # restrict_to (TEST.MAX_IMAGES)

    def restrict_to(self, image_ids, indices):
        """Score only the annotation records ``indices`` (the samples of the first images: TEST.MAX_IMAGES)."""
        self.records = sorted(int(i) for i in indices)

    def metric_names(self):
        """PCKh@0.5 per body part, 'Mean' and 'Mean@0.1' (the table's numbers; 'per_joint' is a list)."""
        return list(TABLE_NAMES)

    def check_ground_truth(self):
        """Read and validate the PCKh ground truth as :meth:`__call__` does (errors name the file, entry, field; the
        records scored, TEST.MAX_IMAGES's, must include one with a head segment). With TEST.PCKH_GT, it must hold
        VAL_ANN's records in VAL_ANN's order; head segments instead of head boxes are warned."""
        gt = check_pckh_gt(self.pckh_path, self.records)   # each file read once at start-up
        if self.pckh_path != self.gt_path:
            check_same_records(self.gt_path, self.pckh_path, gt)
        warn_if_head_segments(self.pckh_path, gt)

    def __call__(self, instances, output_dir):
        missing = [n for n, i in enumerate(instances) if 'index' not in i]
        if missing:
            raise ValueError('MPII evaluation needs the dataset index of every instance; instance %d has none'
                             % missing[0])
        insts = sorted(instances, key=lambda i: int(i['index']))
        indices = [int(i['index']) for i in insts]
        expected = self.records if self.records is not None else list(range(len(insts)))
        if indices != expected:
            raise ValueError('MPII evaluation needs exactly one prediction per record %s; got indices %s...'
                             % ('0..N-1' if self.records is None else 'of TEST.MAX_IMAGES', indices[:10]))
        preds = np.zeros((0, self.num_joints, 3))
        for n, i in zip(indices, insts):
            shape = np.shape(i['keypoints'])
            if len(shape) != 2 or shape[0] != self.num_joints or shape[1] < 2:
                raise ValueError('MPII evaluation: instance of record %d has keypoints of shape %s, expected (%d, 3) '
                                 '(DATASET.KEYPOINT.NUM)' % (n, shape, self.num_joints))
        if insts:
            preds = np.stack([np.asarray(i['keypoints'], dtype=np.float64) for i in insts])
        write_json([{'index': idx, 'image_id': str(i['image_id']), 'keypoints': preds[n].tolist()}
                     for n, (idx, i) in enumerate(zip(indices, insts))], osp.join(output_dir, 'results.json'))
        table = evaluate_pckh(preds, self.pckh_path, records=self.records)
        logger.info(format_pckh(table, 'MPII PCKh@0.5 (head size: %s): %s' % (table['head_source'], self.pckh_path)))
        return table


def evaluator_class(cfg):
    """The class ``cfg.TEST.EVALUATOR`` names ('module:Class', e.g. GCPose's keypoint + person box AP), else the
    core one of the dataset: MPII -> :class:`MpiiEvaluator` (PCKh), any other -> :class:`CocoEvaluator`."""
    spec = cfg.TEST.EVALUATOR
    if spec:
        return import_target(spec, 'TEST.EVALUATOR')
    name = dataset_meta(cfg).name       # raises naming the known datasets for an unknown name
    return MpiiEvaluator if name == 'MPII' else CocoEvaluator   # every dataset but MPII is COCO-style


def build_evaluator(cfg):
    """Callable ``(instances, output_dir) -> metrics dict``: ``evaluator_class(cfg)(cfg)``."""
    return evaluator_class(cfg)(cfg)
