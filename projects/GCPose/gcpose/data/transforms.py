"""Whole-image transforms: shortest-edge resize, horizontal flip with joint swap, padding to a multiple of 32."""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def shortest_edge_size(h, w, short, max_size):
    """Detectron2 ``ResizeShortestEdge.get_output_shape``: (new_h, new_w), rounded half up."""
    scale = short / min(h, w)
    nh, nw = (short, scale * w) if h < w else (scale * h, short)
    if max(nh, nw) > max_size:
        s = max_size / max(nh, nw)
        nh, nw = nh * s, nw * s
    return int(nh + 0.5), int(nw + 0.5)


def resize_image(image, nh, nw):
    """Detectron2 v0.5 ``ResizeTransform.apply_image`` with ``ResizeShortestEdge``'s default ``Image.BILINEAR``.

    uint8 images go through PIL's bilinear resize (a triangle filter widened by the scale when shrinking, i.e.
    antialiased, in 8-bit fixed point with a rounded horizontal pass before the vertical one); others through
    ``F.interpolate(mode='bilinear', align_corners=False)``, as Detectron2. OpenCV's INTER_LINEAR, used before,
    differed by one grey level on ~17 % of the pixels of an upscaled COCO image and does not antialias
    (docs/reference/defects.md F#9).
    """
    if image.dtype == np.uint8:   # np.array: a writable copy (np.asarray of a PIL image is read-only)
        return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), Image.Resampling.BILINEAR))
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return F.interpolate(t, (nh, nw), mode='bilinear', align_corners=False)[0].permute(1, 2, 0).numpy()


def resize_instances(image, boxes, keypoints, short, max_size):
    """Resize an HxWx3 image and its xyxy boxes / (G, K, 3) keypoints (continuous coordinates).

    Returns (image, boxes, keypoints, (sx, sy)) with s = new / old per axis; boxes and keypoints in float64, as
    Detectron2's ``apply_coords`` (the dataset rounds them to float32 once, after the flip and the clip).
    """
    h, w = image.shape[:2]
    nh, nw = shortest_edge_size(h, w, short, max_size)
    sx, sy = nw / w, nh / h
    image = resize_image(image, nh, nw)
    boxes = np.asarray(boxes, np.float64) * np.array([sx, sy, sx, sy])
    keypoints = np.array(keypoints, np.float64)
    keypoints[..., 0] *= sx
    keypoints[..., 1] *= sy
    return image, boxes, keypoints, (sx, sy)


def hflip_instances(image, boxes, keypoints, flip_perm):
    """Mirror the image; x -> W - x (continuous coordinates), boxes re-ordered, left/right joints swapped."""
    w = image.shape[1]
    image = image[:, ::-1].copy()
    boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)   # dtype kept
    keypoints = keypoints[:, flip_perm].copy()
    keypoints[..., 0] = w - keypoints[..., 0]
    return image, boxes, keypoints


def drop_outside_keypoints(keypoints, hw):
    """Keypoints outside [0, W] x [0, H] get v = 0 and x = y = 0 (docs/reference/mlpe_hsrnet_gcpose.md §4.1)."""
    h, w = hw
    k = keypoints.copy()
    out = (k[..., 0] < 0) | (k[..., 1] < 0) | (k[..., 0] > w) | (k[..., 1] > h)
    k[out] = 0
    return k


def pad_batch(images, divisibility=32):
    """Zero-pad a list of (3, h, w) tensors to one (N, 3, H, W) batch, H and W rounded up to ``divisibility``.

    A list that is already a padded batch's rows (equal sizes, multiples of ``divisibility``) is just stacked.
    """
    H = max(i.shape[-2] for i in images)
    W = max(i.shape[-1] for i in images)
    if divisibility > 1:
        H = -(-H // divisibility) * divisibility
        W = -(-W // divisibility) * divisibility
    if all(tuple(i.shape[-2:]) == (H, W) for i in images):
        return torch.stack(list(images))
    out = images[0].new_zeros((len(images), images[0].shape[0], H, W))
    for i, img in enumerate(images):
        out[i, :, :img.shape[1], :img.shape[2]] = img
    return out
