"""Test-time predictor and box evaluation for the 'detection' pipeline (GCPose / Keypoint R-CNN).

:class:`DetectionPredictor` follows the engine's predictor contract (docs/DESIGN.md): a callable
``(model, batch) -> list of instance dicts`` with ``image_id``, ``keypoints`` np (K, 3) in original-image
pixel-index coordinates (x, y, score), ``score`` (the box score, §3.4: no rescoring), ``bbox`` xywh,
``category_id`` 1. Detectron2's COCO export subtracts 0.5 from the continuous keypoint coordinates (§4.1);
boxes stay continuous, as Detectron2 writes them.
"""
import json
import os.path as osp

import numpy as np
import torch


class DetectionPredictor:
    """Runs the model on a collated detection batch (all its images) and flattens the detections.

    Constructed as ``DetectionPredictor(cfg)`` by ``cvpack.inference.build_predictor`` (lazy table entry).
    """

    def __init__(self, cfg=None):
        self.cfg = cfg

    def __call__(self, model, batch):
        device = next(model.parameters()).device
        images = batch['image']   # a padded (N, 3, H, W) tensor, or a list of (3, h, w) images
        images = images.to(device) if torch.is_tensor(images) else [i.to(device) for i in images]
        with torch.no_grad():
            results = model(images, {'image_size': batch['image_size'], 'scale': batch['scale']})
        out = []
        for image_id, r in zip(batch['image_id'], results):
            boxes = r['boxes'].cpu().numpy()
            kps = r['keypoints'].cpu().numpy().copy()
            kps[..., :2] -= 0.5
            for b, s, k in zip(boxes, r['scores'].cpu().numpy(), kps):
                out.append({'image_id': int(image_id), 'category_id': 1, 'keypoints': k.astype(np.float32),
                            'score': float(s),
                            'bbox': [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
        return out


def evaluate_boxes(gt_file, instances, output_dir=None):
    """Person box AP with pycocotools (``iouType='bbox'``); writes ``bbox_results.json`` when output_dir is given.

    Returns a dict with AP, AP50, AP75, APs, APm, APl (empty when there are no detections).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    dets = [{'image_id': i['image_id'], 'category_id': 1, 'bbox': [float(v) for v in i['bbox']],
             'score': float(i['score'])} for i in instances]
    if output_dir:
        with open(osp.join(output_dir, 'bbox_results.json'), 'w') as f:
            json.dump(dets, f)
    if not dets:
        return {}
    gt = COCO(gt_file)
    ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
    ev.params.catIds = [1]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return dict(zip(['AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'], [float(v) for v in ev.stats[:6]]))


class DetectionEvaluator:
    """COCO keypoint AP through the shared evaluator (``cvpack.evaluation``), plus person box AP.

    Returns the keypoint metrics (AP, AP50 ...) and the box metrics prefixed ``box_`` (box_AP ...).
    """

    def __init__(self, cfg):
        from cvpack.evaluation.build import CocoEvaluator
        self.keypoints = CocoEvaluator(cfg)
        self.gt_path = osp.join(cfg.DATASET.ROOT, cfg.DATASET.VAL_ANN)

    def __call__(self, instances, output_dir):
        metrics = dict(self.keypoints(instances, output_dir))
        metrics.update({'box_' + k: v for k, v in evaluate_boxes(self.gt_path, instances, output_dir).items()})
        return metrics
