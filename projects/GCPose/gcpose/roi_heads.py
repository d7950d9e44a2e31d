"""ROI heads: box head (2 FC) and the keypoint branch, stock or GCPose (docs/reference/mlpe_hsrnet_gcpose.md §3.1,
§4.1).

GCPose keypoint branch (docs/reference/mlpe_hsrnet_gcpose.md §3.1 items 1-3): keypoint RoIs are enlarged x1.3 about
their centre, pooled from P2 only, with zeros outside the feature map (the original's pad-P2-and-shift, done as
``border='zeros'`` RoIAlign on the sides it pads, see :func:`outside_padding`); targets are built in the enlarged box;
decoded keypoints stay in image pixels and the returned boxes are the original, un-enlarged detections.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from cvpack.ops import Box2BoxTransform, clip_boxes, multilevel_roi_align, nms, pairwise_iou, scale_boxes

from .fpn import c2_xavier_fill
from .keypoint_head import KeypointHead, heatmaps_to_keypoints, keypoint_loss, keypoint_targets
from .matching import match, subsample_labels

_STRIDES = {'p2': 4, 'p3': 8, 'p4': 16, 'p5': 32, 'p6': 64}


def outside_padding(rois, input_hw):
    """GCPose's ``getOutborderRange``: how far the batch's enlarged keypoint RoIs cross each side of the padded input.

    Args: rois: list over images of (R_i, 4) xyxy boxes; input_hw: (H, W) of the padded batch (feature size x stride).
    Returns: (pad (4,) int64 pixels (left, top, right, bottom), each the largest crossing over the batch rounded up to
        a multiple of 32; border: per side 'zeros' where pad > 0, else 'kernel').
    The original zero-pads the feature map by ``pad`` and shifts boxes (and training keypoints) by (left, top): the
    sides no box crosses are not padded, so samples within half a feature cell of those map edges keep the compiled
    kernel's rule (clamped to the last row / column), where zero padding would fade them (docs/reference/defects.md
    F#12). The original takes one padding for the batch (max over images); so does this.
    """
    H, W = input_hw
    b = torch.cat([r.reshape(-1, 4) for r in rois]) if rois else torch.zeros(0, 4)
    out = torch.zeros(4, dtype=torch.float32, device=b.device)
    if b.numel():
        crossing = torch.stack([-b[:, 0], -b[:, 1], b[:, 2] - W, b[:, 3] - H], dim=1).float()
        out = crossing.clamp(min=0).amax(dim=0)
    pad = ((out / 32).ceil().int() * 32).long()
    return pad, tuple('zeros' if int(v) > 0 else 'kernel' for v in pad)


class BoxHead(nn.Module):
    """flatten 256*7*7 -> FC 1024 + ReLU -> FC 1024 + ReLU -> cls (num_classes + 1), box (4 * num_classes)."""

    def __init__(self, in_channels=256, pool=7, fc_dim=1024, num_classes=1):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * pool * pool, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, 4 * num_classes)
        c2_xavier_fill(self.fc1)
        c2_xavier_fill(self.fc2)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x):
        """Args: x (R, C, 7, 7) RoIAlign features of R proposals (any input-pixel boxes).
        Returns: class logits (R, K + 1) (index K = background; K = 1: person), box deltas (R, 4K)
            (dx, dy, dw, dh) relative to each proposal, scaled by ROI_HEADS.BBOX_REG_WEIGHTS (Box2BoxTransform).
        """
        x = F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))
        return self.cls_score(x), self.bbox_pred(x)


class KeypointROIHeads(nn.Module):
    """Box branch on p2..p5 plus the keypoint branch; config keys MODEL.ROI_HEADS / MODEL.ROI_KEYPOINT_HEAD.

    ``num_keypoints`` is the dataset's (DATASET.KEYPOINT.NUM).
    """

    def __init__(self, cfg_model, num_keypoints):
        super().__init__()
        rh, kh = cfg_model.ROI_HEADS, cfg_model.ROI_KEYPOINT_HEAD
        self.box_features = list(rh.IN_FEATURES)
        self.kp_features = self.box_features[:1] if kh.P2_ONLY else self.box_features
        self.box_pool, self.kp_pool = rh.POOLER_RESOLUTION, kh.POOLER_RESOLUTION
        self.sampling_ratio = rh.POOLER_SAMPLING_RATIO
        self.box_head = BoxHead(256, self.box_pool, 1024, rh.NUM_CLASSES)
        self.coder = Box2BoxTransform(rh.BBOX_REG_WEIGHTS)
        self.rh, self.kh = rh, kh
        self.keypoint_head = KeypointHead(256, num_keypoints, kh.CONV_DIM, kh.NUM_CONVS,
                                          tuple(kh.GCM_POSITIONS), kh.POOLER_RESOLUTION, kh.GCM_HEADS)
        self.enlarge = kh.BOX_ENLARGE
        self.border = 'zeros' if kh.ZERO_PAD_OUTSIDE else 'kernel'

    def _pool(self, features, names, boxes, size, border='kernel'):
        return multilevel_roi_align([features[n] for n in names], boxes, size,
                                    [_STRIDES[n] for n in names], self.sampling_ratio, True, border)

    def _keypoint_rois(self, features, boxes):
        """Enlarge the keypoint boxes; returns (rois, RoIAlign border, (left, top) shift in pixels).

        ZERO_PAD_OUTSIDE: the original's padding (:func:`outside_padding`); the shift is its box offset, used where
        its float arithmetic shows (targets and decoding run in the shifted frame, keypoints are shifted back).
        """
        rois = [scale_boxes(b, self.enlarge) for b in boxes]
        dev = rois[0].device if rois else None
        if self.border != 'zeros':
            return rois, self.border, torch.zeros(2, dtype=torch.long, device=dev)
        name = self.kp_features[0]
        hw = [int(v) * _STRIDES[name] for v in features[name].shape[-2:]]
        pad, border = outside_padding(rois, hw)
        return rois, border, pad[:2].to(dev)

    def _keypoint_features(self, features, rois, border):
        return self.keypoint_head(self._pool(features, self.kp_features, rois, self.kp_pool, border))

    def forward(self, features: Dict[str, torch.Tensor], proposals: List[torch.Tensor], image_sizes, targets=None):
        """Args:
            features: dict p2..p6; proposals: N (P_i, 4) xyxy input pixels; image_sizes: N (h, w);
            targets (training): dict with 'gt_boxes' N (G_i, 4) and 'gt_keypoints' N (G_i, K, 3) in input pixels.
        Returns: training: dict of losses; eval: N dicts {boxes (D, 4), scores (D,), keypoints (D, K, 3)
            = x, y (continuous input pixels), keypoint score}.
        """
        if self.training and targets is not None:
            return self._train(features, proposals, targets)
        return self._infer(features, proposals, image_sizes)

    def _sample(self, proposals, gt_boxes):
        """Append GT, match at IoU 0.5, sample 512 at 25 % foreground. Returns per image (boxes, gt_idx, is_fg)."""
        out = []
        for props, gt in zip(proposals, gt_boxes):
            gt = gt.to(props)
            boxes = torch.cat([props, gt])
            matches, labels = match(pairwise_iou(gt, boxes), [self.rh.IOU_THRESHOLD], [0, 1], False)
            cls = torch.where(labels == 1, torch.zeros_like(matches), torch.ones_like(matches))
            pos, neg = subsample_labels(cls, self.rh.BATCH_SIZE_PER_IMAGE, self.rh.POSITIVE_FRACTION, 1)
            sel = torch.cat([pos, neg])
            out.append((boxes[sel], matches[sel], torch.arange(sel.numel(), device=sel.device) < pos.numel()))
        return out

    def _train(self, features, proposals, targets):
        gt_boxes, gt_kps = targets['gt_boxes'], targets['gt_keypoints']
        samples = self._sample(proposals, gt_boxes)
        logits, deltas = self.box_head(self._pool(features, self.box_features, [s[0] for s in samples], self.box_pool))
        gt_cls = torch.cat([(~fg).long() for _, _, fg in samples])
        loss_cls = F.cross_entropy(logits, gt_cls)
        fg_boxes = [(b[fg], gt_boxes[i].to(b)[m[fg]]) for i, (b, m, fg) in enumerate(samples)]
        src, tgt = torch.cat([f[0] for f in fg_boxes]), torch.cat([f[1] for f in fg_boxes])
        fg = gt_cls == 0
        reg = F.smooth_l1_loss(deltas[fg], self.coder.encode(src, tgt), beta=self.rh.SMOOTH_L1_BETA, reduction='sum')
        losses = {'loss_cls': loss_cls, 'loss_box_reg': reg / max(gt_cls.numel(), 1)}
        losses['loss_keypoint'] = self._keypoint_loss(features, samples, gt_kps)
        return losses

    def _keypoint_loss(self, features, samples, gt_kps):
        """Foreground proposals with >= 1 visible keypoint inside the (original) box; targets in the enlarged box."""
        boxes_kp, kps = [], []
        for (boxes, m, fg), kp in zip(samples, gt_kps):
            b, k = boxes[fg], kp.to(boxes)[m[fg]]                           # (F, 4), (F, K, 3)
            x, y = k[..., 0], k[..., 1]
            inside = ((x >= b[:, 0:1]) & (x <= b[:, 2:3]) & (y >= b[:, 1:2]) & (y <= b[:, 3:4]) & (k[..., 2] > 0))
            keep = inside.any(dim=1)
            boxes_kp.append(b[keep])
            kps.append(k[keep])
        rois, border, shift = self._keypoint_rois(features, boxes_kp)
        maps = self._keypoint_features(features, rois, border)
        # the original's frame: boxes and keypoints shifted by the padding (the same floor cells to the last bit)
        k = torch.cat(kps).clone()
        k[..., :2] += shift.to(k)
        labels, valid = keypoint_targets(k, torch.cat(rois) + shift.repeat(2).to(k), maps.shape[-1])
        return keypoint_loss(maps, labels, valid) * self.kh.LOSS_WEIGHT

    @torch.no_grad()
    def _infer(self, features, proposals, image_sizes):
        logits, deltas = self.box_head(self._pool(features, self.box_features, proposals, self.box_pool))
        scores = logits.softmax(dim=1)[:, 0]          # one foreground class (person)
        boxes = self.coder.decode(deltas, torch.cat(proposals))
        results, start = [], 0
        for props, hw in zip(proposals, image_sizes):
            b, s = clip_boxes(boxes[start:start + len(props)], hw), scores[start:start + len(props)]
            start += len(props)
            keep = (s > self.rh.SCORE_THRESH_TEST) & torch.isfinite(b).all(dim=1) & torch.isfinite(s)
            b, s = b[keep], s[keep]
            k = nms(b, s, self.rh.NMS_THRESH_TEST)[:self.rh.DETECTIONS_PER_IMAGE]
            results.append({'boxes': b[k], 'scores': s[k]})
        kp = self._keypoints(features, [r['boxes'] for r in results])
        start = 0
        for r in results:
            r['keypoints'] = kp[start:start + len(r['boxes'])][..., [0, 1, 3]]
            start += len(r['boxes'])
        return results

    def _keypoints(self, features, boxes):
        """Keypoints of detections ``boxes`` (list of (D_i, 4)) -> (sum D_i, K, 4) x, y (image pixels), logit, score."""
        rois, border, shift = self._keypoint_rois(features, boxes)
        maps = self._keypoint_features(features, rois, border)
        # decoded in the original's shifted frame (ceil of the shifted widths, + x1 + shift), then shifted back
        kp = heatmaps_to_keypoints(maps, torch.cat(rois) + shift.repeat(2).to(maps))
        kp[..., :2] -= shift.to(kp)
        return kp
