"""Evaluation of the 'detection' pipeline (GCPose / Keypoint R-CNN): COCO keypoint AP + person box AP.

The keypoint part is the shared :class:`cvpack.evaluation.build.CocoEvaluator` (TEST.NMS, results.json with each
detection's box, as Detectron2's COCOEvaluator writes them: pycocotools then takes the detection areas of APm / APl
from the boxes);
the box part scores the predictor's ``bbox`` (xywh, continuous pixels) and box score with pycocotools.
"""
import contextlib
import io
import logging
import os.path as osp

from cvpack.evaluation.build import CocoEvaluator, write_json
from cvpack.evaluation.coco import load_coco_gt

logger = logging.getLogger(__name__)   # 'projects.GCPose...': the engine routes it to the test log
BOX_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def evaluate_boxes(gt_file, instances, output_dir=None, image_ids=None):
    """Person box AP with pycocotools (``iouType='bbox'``); writes ``bbox_results.json`` (atomically) when
    output_dir is given. pycocotools' printed progress and summary table go to this module's logger, not stdout.
    ``image_ids``: score these images only (TEST.MAX_IMAGES); None = all.

    Returns a dict with AP, AP50, AP75, APs, APm, APl; all 0 when there are no detections (nothing was found:
    pycocotools' ``loadRes`` fails on an empty list, and an empty dict lost 'box_AP' for TEST.BEST_METRIC).
    """
    from pycocotools.cocoeval import COCOeval
    dets = [{'image_id': i['image_id'], 'category_id': 1, 'bbox': [float(v) for v in i['bbox']],
             'score': float(i['score'])} for i in instances]
    if output_dir:
        write_json(dets, osp.join(output_dir, 'bbox_results.json'))
    if not dets:
        logger.warning('person box AP: no detections; every box metric is 0')
        return {k: 0.0 for k in BOX_NAMES}
    gt = load_coco_gt(gt_file)   # validated (file, annotation id, field named on bad values), read quietly
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
            ev.params.catIds = [1]
            if image_ids is not None:
                ev.params.imgIds = sorted(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    finally:   # also when pycocotools fails: what it printed explains where
        if printed.getvalue().strip():
            logger.info('person box AP (pycocotools, %s):\n%s', gt_file, printed.getvalue().rstrip())
    return dict(zip(BOX_NAMES, [float(v) for v in ev.stats[:6]]))


class DetectionEvaluator:
    """COCO keypoint AP through the shared evaluator (``cvpack.evaluation``), plus person box AP.

    Built by ``cvpack.evaluation.build_evaluator`` from the exps'
    ``TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:DetectionEvaluator'``.

    Returns the keypoint metrics (AP, AP50 ...) and the box metrics prefixed ``box_`` (box_AP ...).
    """

    def __init__(self, cfg):
        # Detectron2's keypoint results carry the detection box, which pycocotools uses for the area ranges
        self.keypoints = CocoEvaluator(cfg, with_bbox=True)
        self.gt_path = osp.join(cfg.DATASET.ROOT, cfg.DATASET.VAL_ANN)
        self.image_ids = None

    def restrict_to(self, image_ids, indices):
        """TEST.MAX_IMAGES: score only the images ``image_ids`` (keypoints and boxes)."""
        self.keypoints.restrict_to(image_ids, indices)
        self.image_ids = list(image_ids)

    def metric_names(self):
        """The keypoint evaluator's names, then box_AP, box_AP50, box_AP75, box_APs, box_APm, box_APl."""
        return self.keypoints.metric_names() + ['box_' + k for k in BOX_NAMES]

    def check_ground_truth(self):
        """The keypoint evaluator's check: the box part reads the same file (DATASET.VAL_ANN)."""
        self.keypoints.check_ground_truth()

    def __call__(self, instances, output_dir):
        metrics = dict(self.keypoints(instances, output_dir))
        boxes = evaluate_boxes(self.gt_path, instances, output_dir, image_ids=self.image_ids)
        metrics.update({'box_' + k: v for k, v in boxes.items()})
        return metrics
