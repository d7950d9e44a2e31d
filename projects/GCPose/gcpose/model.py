"""Keypoint R-CNN / GCPose model: ResNet-FPN -> RPN -> box + keypoint ROI heads (docs/reference/mlpe_hsrnet_gcpose.md
§4.2)."""
import logging

import torch
from torch import nn

from cvpack.modeling.pretrained import LoadReport, load_mapped, load_state_dict
from cvpack.ops import clip_boxes, nonempty

from .data.transforms import pad_batch, shortest_edge_size
from .fpn import FPN, ResNetFPN
from .roi_heads import KeypointROIHeads
from .rpn import RPN

logger = logging.getLogger(__name__)


def _mark_checkpoint_loaded(model, incompatible):
    """load_state_dict post hook: the trunk counts as initialised when the checkpoint held all its tensors."""
    if not any(k.startswith('backbone.body.') for k in incompatible.missing_keys):
        model.init_source = 'checkpoint'


def detector_postprocess(result, image_size, out_size):
    """Detectron2 v0.5 ``detector_postprocess``: rescale one image's detections from the resized input to the original.

    Args: result {boxes (D, 4), scores (D,), keypoints (D, K, 3)} in input pixels; image_size (h, w) of the resized,
        un-padded input; out_size (H, W) of the original image.
    Returns: a new dict: boxes and keypoint x, y multiplied by W / w and H / h (float32, as ``Boxes.scale``), boxes
        clipped to [0, W] x [0, H], detections whose clipped box has no width or height dropped
        (``Boxes.nonempty``), keypoints not clipped.
    """
    h, w = (int(v) for v in image_size)
    H, W = (int(v) for v in out_size)
    sx, sy = W / w, H / h
    boxes = result['boxes'].clone()
    boxes[:, 0::2] *= sx
    boxes[:, 1::2] *= sy
    boxes = clip_boxes(boxes, (H, W))
    keep = nonempty(boxes)
    kps = result['keypoints'][keep].clone()
    kps[..., 0] *= sx
    kps[..., 1] *= sy
    return dict(result, boxes=boxes[keep], scores=result['scores'][keep], keypoints=kps)


class KeypointRCNN(nn.Module):
    """Two-stage top-down-in-one-network pose estimator (Detectron2 Keypoint R-CNN, optionally GCPose's head).

    Built from ``cfg.MODEL`` (see :func:`projects.GCPose.gcpose.preset.detection_config` and
    :func:`projects.GCPose.gcpose.config.add_gcpose_config`).
    """

    def __init__(self, cfg):
        super().__init__()
        m = cfg.MODEL
        self.backbone = ResNetFPN(m.BACKBONE, m.RESNET.STRIDE_IN_1X1, m.RESNET.FREEZE_AT, m.RESNET.NORM)
        self.rpn = RPN(m.RPN)
        self.roi_heads = KeypointROIHeads(m, cfg.DATASET.KEYPOINT.NUM)
        self.size_divisibility = int(cfg.INPUT.SIZE_DIVISIBILITY)
        if self.size_divisibility <= 0 or self.size_divisibility % 32:
            # FPN: C2..C5 must halve exactly for the top-down sums
            raise ValueError('INPUT.SIZE_DIVISIBILITY must be a positive multiple of 32, got %r'
                             % (cfg.INPUT.SIZE_DIVISIBILITY,))
        # Frozen trunk layers (FREEZE_AT > 0, FrozenBN) never train, so they must come from ImageNet or a
        # checkpoint; ``init_source`` records which (None = random) and train() warns once when it is None.
        self.frozen = (m.RESNET.FREEZE_AT, m.RESNET.NORM) if m.RESNET.FREEZE_AT > 0 or m.RESNET.NORM == 'FrozenBN' \
            else None
        self.init_source = None
        self._warned_random_frozen = False
        self.register_load_state_dict_post_hook(_mark_checkpoint_loaded)

    def train(self, mode=True):
        """nn.Module.train; the first switch to training mode with frozen layers still random logs a WARNING.

        The check sits here (not in build_model) because test.py, tools and tests build the model without
        ImageNet weights and then load a checkpoint; the trainer switches to training mode only after it has
        loaded MODEL.PRETRAINED / MODEL.WEIGHT / a resume checkpoint.
        """
        if mode and self.frozen and self.init_source is None and not self._warned_random_frozen:
            self._warned_random_frozen = True
            logger.warning('training with MODEL.RESNET.FREEZE_AT %d and NORM %s but the ResNet trunk is random '
                           '(no MODEL.PRETRAINED, MODEL.WEIGHT or checkpoint loaded): the frozen stem/stages and '
                           'FrozenBN statistics will stay random. Set MODEL.PRETRAINED, or FREEZE_AT 0 and NORM BN '
                           'to train from scratch.', *self.frozen)
        return super().train(mode)

    def forward(self, images, targets=None):
        """Args:
            images: (N, 3, H, W) normalised batch, or a list of N (3, h_i, w_i) images; zero-padded here to a
                multiple of INPUT.SIZE_DIVISIBILITY (32) when needed (Detectron2 pads inside the model as well).
            targets: the collated batch dict: 'image_size' N (h, w) of the resized, un-padded images;
                training also 'gt_boxes' N (G_i, 4) xyxy and 'gt_keypoints' N (G_i, K, 3) (x, y continuous
                input pixels, v); 'orig_size' N (H, W) of the original images: the outputs go through
                Detectron2's ``detector_postprocess`` (see :func:`detector_postprocess`); else 'scale' N (sx, sy) or
                floats (input pixels per original pixel) divides the output coordinates (no clipping).
        Returns:
            training: dict of scalar losses (loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg, loss_keypoint).
            eval: N dicts {boxes (D, 4) xyxy, scores (D,), keypoints (D, K, 3) = x, y, score}, coordinates in
                continuous **original-image** pixels (pixel i spans [i, i + 1]) when 'orig_size' or 'scale' is given,
                else input pixels.
        """
        targets = targets or {}
        if isinstance(images, (list, tuple)):
            sizes = [tuple(i.shape[-2:]) for i in images]
        else:
            sizes = [tuple(images.shape[-2:])] * images.shape[0]
        sizes = [tuple(int(v) for v in s) for s in (targets.get('image_size') or sizes)]
        images = pad_batch(list(images), self.size_divisibility)   # no copy when already padded
        features = self.backbone(images)
        training = self.training and 'gt_boxes' in targets
        proposals, losses = self.rpn(features, sizes, targets.get('gt_boxes') if training else None)
        if training:
            losses.update(self.roi_heads(features, proposals, sizes, targets))
            return losses
        results = self.roi_heads(features, proposals, sizes)
        if targets.get('orig_size') is not None:
            return [detector_postprocess(r, hw, out) for r, hw, out in zip(results, sizes, targets['orig_size'])]
        for r, scale in zip(results, targets.get('scale') or [1.0] * len(results)):
            # without the original size: continuous coordinates scale linearly back, separately in x and y
            s = torch.as_tensor(scale, dtype=torch.float32, device=images.device).reshape(-1).expand(2)
            r['boxes'] = r['boxes'] / s.repeat(2)
            r['keypoints'][..., :2] = r['keypoints'][..., :2] / s
        return results

    def complexity_parts(self, cfg):
        """Sub-networks for ``cvpack.tools.complexity`` (no INPUT_SHAPE: the cost depends on the image and the RoIs).

        Returns a list of (name, module, input, calls per image): the ResNet-FPN trunk on a COCO-typical 480 x 640
        image resized to INPUT.MIN_SIZE_TEST (capped at MAX_SIZE_TEST) and padded like forward(); the RPN head on
        its FPN maps; the box head per RoI (POST_NMS_TOPK_TEST proposals); the keypoint head per RoI
        (DETECTIONS_PER_IMAGE detections). Inputs are zeros on the parameters' device (meta in the tool).
        """
        h, w = shortest_edge_size(480, 640, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
        d = self.size_divisibility
        H, W = -(-h // d) * d, -(-w // d) * d
        dev = next(self.parameters()).device
        ch = self.backbone.fpn.output[0].out_channels
        feats = [torch.zeros(1, ch, H // s, W // s, device=dev) for s in FPN.strides]
        rh, m = self.roi_heads, cfg.MODEL
        return [('backbone+FPN %dx%d' % (H, W), self.backbone, torch.zeros(1, 3, H, W, device=dev), 1),
                ('RPN head', self.rpn.head, feats, 1),
                ('box head per RoI', rh.box_head, torch.zeros(1, ch, rh.box_pool, rh.box_pool, device=dev),
                 m.RPN.POST_NMS_TOPK_TEST),
                ('keypoint head per RoI', rh.keypoint_head, torch.zeros(1, ch, rh.kp_pool, rh.kp_pool, device=dev),
                 m.ROI_HEADS.DETECTIONS_PER_IMAGE)]

    def load_pretrained(self, source) -> LoadReport:
        """ImageNet init of the ResNet trunk from a torchvision-format state dict (path or URL); ``fc.*`` skipped.

        Called by the trainer with MODEL.PRETRAINED when training from scratch (never by build_model).
        torchvision checkpoints are stride-in-3x3: build with MODEL.RESNET.STRIDE_IN_1X1 = False for
        them (the preset does); MSRA caffe2 weights converted to these key names are stride-in-1x1.
        Returns the :class:`LoadReport`; raises ValueError when the file holds no ResNet tensor.
        """
        state = load_state_dict(source)
        report = load_mapped(self.backbone.body, state, lambda k: None if k.startswith('fc.') else k)
        if not report.loaded:
            raise ValueError('no ResNet tensors found in %s (expected torchvision key names)' % source)
        if report.missing:   # e.g. R-50 weights for a R-101 trunk: the missing blocks stay random
            logger.warning('ImageNet init from %s left %d trunk tensors random (e.g. %s)', source,
                           len(report.missing), report.missing[0])
        else:
            self.init_source = str(source)
        logger.info('ImageNet init from %s: %s', source, report.summary())
        return report


def build_model(cfg):
    """Builder used by the exps' network.py (``projects.GCPose.gcpose.build_model``).

    Never reads MODEL.PRETRAINED: the trainer calls :meth:`KeypointRCNN.load_pretrained` when training from
    scratch, so test.py, tools and tests build the model without reading or downloading weights.
    """
    return KeypointRCNN(cfg)
