"""``build_evaluator(cfg)``: NMS + results file + metrics for the dataset of ``cfg``."""
import json
import logging
import os
import os.path as osp

import numpy as np

from .coco import evaluate_keypoints, format_table, instances_to_coco_results, load_coco_gt
from ..data.meta_file import dataset_meta
from ..data.validate import read_json
from .datasets import crowd_index_split, drop_in_ignore_regions, prepare_gt
from .nms import nms_per_image
from .pckh import evaluate_pckh, format_pckh

logger = logging.getLogger(__name__)  # reaches the test log (console + TEST_DIR/test_log.txt)


def _write_json(obj, path):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _area(inst):
    if 'area' in inst:
        return float(inst['area'])
    bbox = np.asarray(inst['bbox'], dtype=np.float64)  # xywh
    return float(bbox[2] * bbox[3])


def apply_test_nms(cfg, instances):
    """cfg.TEST.NMS ('none' | 'oks' | 'soft_oks', TEST.NMS_THRESH) per image on predictor instances, with the
    instance areas OKS uses; the COCO evaluator and ``cvpack.apis`` share it. Returns the kept instances."""
    insts = [dict(i, area=_area(i)) for i in instances]
    return nms_per_image(insts, cfg.TEST.get('NMS', 'none'), float(cfg.TEST.get('NMS_THRESH', 0.9)),
                         np.asarray(dataset_meta(cfg).sigmas, np.float64))


class CocoEvaluator:
    """COCO-style keypoints (COCO, CrowdPose, OCHuman, AIC, PoseTrack18, user metadata): cfg.TEST.NMS ('none' |
    'oks' | 'soft_oks', NMS_THRESH) per image, results.json, AP/AR with the dataset's OKS sigmas.

    The instance scores come from the predictor (cfg.TEST.RESCORE is applied there). Per dataset
    (:mod:`cvpack.evaluation.datasets`): predictions in PoseTrack18's ignore regions are dropped; CrowdPose adds
    AP_easy / AP_medium / AP_hard (images split by crowdIndex; -1.0 when a split has no image).
    """

    def __init__(self, cfg):
        self.gt_path = osp.join(cfg.DATASET.ROOT, cfg.DATASET.VAL_ANN)
        self.cfg = cfg
        self.meta = dataset_meta(cfg)
        self.nms = cfg.TEST.get('NMS', 'none')
        self.box_source = 'GT boxes' if cfg.TEST.get('USE_GT_BBOX', False) else 'detected boxes'

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
        results = instances_to_coco_results(kept)
        results.sort(key=lambda r: (r['image_id'], -r['score']))
        path = osp.join(output_dir, 'results.json')
        _write_json(results, path)
        sigmas = np.asarray(self.meta.sigmas, np.float64)
        stats = evaluate_keypoints(gt, path, sigmas=sigmas)
        split = self.meta.extra.get('crowd_index_split')
        if split:
            for level, ids in crowd_index_split(gt.dataset['images'], split).items():
                stats['AP_' + level] = evaluate_keypoints(gt, path, sigmas=sigmas, img_ids=ids)['AP'] if ids else -1.0
        logger.info(format_table(stats, 'COCO keypoints (%s, NMS %s, %d of %d instances): %s'
                           % (self.box_source, self.nms, len(kept), len(instances), path)))
        return stats


def load_coco_gt_for(path, meta=None):
    """The GT as a validated pycocotools COCO, after :func:`prepare_gt` (area filled in for ``meta``'s with
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
    """MPII PCKh: one instance per annotation record, ordered by the dataset 'index' of each sample."""

    def __init__(self, cfg):
        self.gt_path = osp.join(cfg.DATASET.ROOT, cfg.DATASET.VAL_ANN)

    def __call__(self, instances, output_dir):
        missing = [n for n, i in enumerate(instances) if 'index' not in i]
        if missing:
            raise ValueError('MPII evaluation needs the dataset index of every instance; instance %d has none'
                             % missing[0])
        insts = sorted(instances, key=lambda i: int(i['index']))
        indices = [int(i['index']) for i in insts]
        if indices != list(range(len(insts))):
            raise ValueError('MPII evaluation needs exactly one prediction per record 0..N-1; got indices %s...'
                             % indices[:10])
        preds = np.zeros((0, 16, 3))
        if insts:
            preds = np.stack([np.asarray(i['keypoints'], dtype=np.float64) for i in insts])
        _write_json([{'index': idx, 'image_id': str(i['image_id']), 'keypoints': preds[n].tolist()}
                     for n, (idx, i) in enumerate(zip(indices, insts))], osp.join(output_dir, 'results.json'))
        table = evaluate_pckh(preds, self.gt_path)
        logger.info(format_pckh(table, 'MPII PCKh@0.5 (head size: %s): %s' % (table['head_source'], self.gt_path)))
        return table


_EVALUATORS = {'COCO': CocoEvaluator, 'MPII': MpiiEvaluator}


def build_evaluator(cfg):
    """Callable ``(instances, output_dir) -> metrics dict``: ``cfg.TEST.EVALUATOR`` ('module:Class', built as
    ``Class(cfg)``) when set (GCPose's exps: keypoint + person box AP), else by cfg.DATASET.NAME (MPII: PCKh; any other: COCO-style AP).
    """
    spec = cfg.get('TEST', {}).get('EVALUATOR')
    if spec:
        from ..inference import import_target
        return import_target(spec, 'TEST.EVALUATOR')(cfg)
    name = dataset_meta(cfg).name       # raises naming the known datasets for an unknown name
    return _EVALUATORS.get(name, CocoEvaluator)(cfg)   # every dataset but MPII is COCO-style
