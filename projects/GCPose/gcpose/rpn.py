"""Region Proposal Network (Detectron2 ``StandardRPNHead`` + ``RPN``, docs/reference/mlpe_hsrnet_gcpose.md §4.1
"RPN")."""
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from cvpack.ops import AnchorGenerator, Box2BoxTransform, batched_nms, clip_boxes, nonempty, pairwise_iou

from .matching import match, subsample_labels


class RPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, 1x1 objectness (A) and 1x1 deltas (4A); init N(0, 0.01), bias 0."""

    def __init__(self, channels=256, num_anchors=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, 4 * num_anchors, 1)
        for m in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, feats):
        """Args: feats: list over FPN levels of (N, C, H_l, W_l) maps.
        Returns: per level, objectness logits (N, H_l * W_l * A) and deltas (N, H_l * W_l * A, 4) (dx, dy, dw, dh
            relative to the anchor), flattened in (y, x, anchor) order, the AnchorGenerator's order.
        """
        logits, deltas = [], []
        for x in feats:
            t = F.relu(self.conv(x))
            o = self.objectness_logits(t)
            d = self.anchor_deltas(t)
            N, A, H, W = o.shape
            logits.append(o.permute(0, 2, 3, 1).reshape(N, -1))
            deltas.append(d.view(N, A, 4, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, 4))
        return logits, deltas


class RPN(nn.Module):
    """Anchors, objectness/box losses, and proposals (per-level top-k, NMS per level, post-NMS top-k)."""

    def __init__(self, cfg_rpn, in_features=('p2', 'p3', 'p4', 'p5', 'p6'), strides=(4, 8, 16, 32, 64)):
        super().__init__()
        c = cfg_rpn
        self.in_features = list(in_features)
        self.anchor_generator = AnchorGenerator(tuple(c.ANCHOR_SIZES), tuple(c.ASPECT_RATIOS), tuple(strides))
        self.head = RPNHead(256, self.anchor_generator.num_anchors)
        self.coder = Box2BoxTransform(c.BBOX_REG_WEIGHTS)
        self.iou_thresholds, self.iou_labels = list(c.IOU_THRESHOLDS), list(c.IOU_LABELS)
        self.batch_size_per_image, self.positive_fraction = c.BATCH_SIZE_PER_IMAGE, c.POSITIVE_FRACTION
        self.pre_nms = {True: c.PRE_NMS_TOPK_TRAIN, False: c.PRE_NMS_TOPK_TEST}
        self.post_nms = {True: c.POST_NMS_TOPK_TRAIN, False: c.POST_NMS_TOPK_TEST}
        self.nms_thresh = c.NMS_THRESH

    def forward(self, features: Dict[str, torch.Tensor], image_sizes, gt_boxes=None):
        """Args:
            features: dict p2..p6 (N, 256, H_l, W_l); image_sizes: N (h, w) of the un-padded resized images;
            gt_boxes: training only, N (G_i, 4) xyxy in input pixels.
        Returns: (proposals: N (P_i, 4) detached xyxy input pixels, losses dict (empty at test)).
        """
        feats = [features[f] for f in self.in_features]
        anchors = self.anchor_generator([f.shape[-2:] for f in feats], device=feats[0].device)
        logits, deltas = self.head(feats)
        proposals = self._proposals(anchors, [lg.detach() for lg in logits], [d.detach() for d in deltas], image_sizes)
        losses = {}
        if self.training and gt_boxes is not None:
            losses = self._losses(torch.cat(anchors), torch.cat(logits, 1), torch.cat(deltas, 1), gt_boxes)
        return proposals, losses

    def _losses(self, anchors, logits, deltas, gt_boxes):
        N = logits.shape[0]
        obj_loss = logits.sum() * 0
        box_loss = deltas.sum() * 0
        for i in range(N):
            gt = gt_boxes[i].to(anchors)
            matches, labels = match(pairwise_iou(gt, anchors), self.iou_thresholds, self.iou_labels, True)
            pos, neg = subsample_labels(labels, self.batch_size_per_image, self.positive_fraction, 0)
            target = torch.zeros_like(logits[i])
            target[pos] = 1
            sel = torch.cat([pos, neg])
            obj_loss = obj_loss + F.binary_cross_entropy_with_logits(logits[i, sel], target[sel], reduction='sum')
            if pos.numel():
                tgt = self.coder.encode(anchors[pos], gt[matches[pos]])
                box_loss = box_loss + F.l1_loss(deltas[i, pos], tgt, reduction='sum')  # smooth-L1, beta 0
        norm = self.batch_size_per_image * N
        return {'loss_rpn_cls': obj_loss / norm, 'loss_rpn_loc': box_loss / norm}

    def _proposals(self, anchors, logits, deltas, image_sizes) -> List[torch.Tensor]:
        N = logits[0].shape[0]
        k_pre, k_post = self.pre_nms[self.training], self.post_nms[self.training]
        boxes_l, scores_l, level_l = [], [], []
        for lvl, (a, lo, de) in enumerate(zip(anchors, logits, deltas)):
            k = min(k_pre, lo.shape[1])
            top, idx = lo.topk(k, dim=1)                                     # (N, k)
            d = torch.gather(de, 1, idx[..., None].expand(-1, -1, 4))
            boxes = self.coder.decode(d.reshape(-1, 4), a[idx.reshape(-1)]).reshape(N, k, 4)
            boxes_l.append(boxes)
            scores_l.append(top)
            level_l.append(torch.full((k,), lvl, dtype=torch.long, device=top.device))
        boxes, scores, levels = torch.cat(boxes_l, 1), torch.cat(scores_l, 1), torch.cat(level_l)
        out = []
        for i in range(N):
            b, s, lv = boxes[i], scores[i], levels
            ok = torch.isfinite(b).all(1) & torch.isfinite(s)
            b, s, lv = clip_boxes(b[ok], image_sizes[i]), s[ok], lv[ok]
            keep = nonempty(b)
            b, s, lv = b[keep], s[keep], lv[keep]
            keep = batched_nms(b, s, lv, self.nms_thresh)[:k_post]
            out.append(b[keep].detach())
        return out
