"""Test-time predictor for the 'detection' pipeline (GCPose / Keypoint R-CNN).

:class:`DetectionPredictor` follows the engine's predictor contract (docs/DESIGN.md): a callable
``(model, batch) -> list of instance dicts`` with ``image_id``, ``keypoints`` np (K, 3) in original-image
pixel-index coordinates (x, y, score), ``score`` (the box score, docs/reference/mlpe_hsrnet_gcpose.md §3.4: no
rescoring), ``bbox`` xywh, ``category_id`` 1. Detectron2's COCO export subtracts 0.5 from the continuous keypoint
coordinates (docs/reference/mlpe_hsrnet_gcpose.md §4.1); boxes stay continuous, as Detectron2 writes them.
"""
import numpy as np
import torch


class DetectionPredictor:
    """Runs the model on a collated detection batch (all its images) and flattens the detections.

    Constructed as ``DetectionPredictor(cfg)`` by ``cvpack.inference.build_predictor`` from the exps'
    ``TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor:DetectionPredictor'``.
    """

    def __init__(self, cfg=None):
        self.cfg = cfg

    def __call__(self, model, batch):
        """Args: model (KeypointRCNN, eval mode); batch: collated detection samples ('image' a padded (N, 3, H, W)
            tensor or N (3, h_i, w_i) tensors, 'image_size', 'scale' (sx, sy) input / original pixels, 'image_id',
            'orig_size' (H, W) (the dataset's; without it the outputs are only rescaled, not clipped)).
        Returns: one dict per detection {image_id, category_id 1, keypoints np (K, 3) x, y original-image pixel
            indices (continuous - 0.5) + keypoint score, score (box score), bbox [x, y, w, h] continuous pixels}.
        """
        device = next(model.parameters()).device
        images = batch['image']   # a padded (N, 3, H, W) tensor, or a list of (3, h, w) images
        images = images.to(device) if torch.is_tensor(images) else [i.to(device) for i in images]
        with torch.no_grad():
            # orig_size: Detectron2's detector_postprocess (rescale, clip to the image, drop empty boxes)
            results = model(images, {'image_size': batch['image_size'], 'scale': batch['scale'],
                                     'orig_size': batch.get('orig_size')})
        out = []
        for image_id, r in zip(batch['image_id'], results):
            boxes = r['boxes'].cpu().numpy()
            kps = r['keypoints'].cpu().numpy().copy()
            kps[..., :2] -= 0.5
            # a str id (COCO conversions use them) is kept as the ground truth gives it, as the top-down records do
            image_id = image_id if isinstance(image_id, str) else int(image_id)
            for b, s, k in zip(boxes, r['scores'].cpu().numpy(), kps):
                out.append({'image_id': image_id, 'category_id': 1, 'keypoints': k.astype(np.float32),
                            'score': float(s),
                            'bbox': [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
        return out
