"""Straightforward per-image, per-joint re-implementation of the original Megvii ``get_results``.

Written from ``docs/reference/rsn_mspn.md`` §5.3 as the reference the batched decoder must match (tests). It stays
in the package, not under ``tests/``, because ``tools/bench_decode.py`` times it as the baseline; nothing imports it
at run time. It returns input-crop pixels (before the image mapping).
"""
import cv2
import numpy as np


def megvii_reference(outputs, kernel=5, shift=0.25, stride=4, divide_by_max=False):
    """outputs: (N, K, h, w) float32 numpy. Returns coords (N, K, 2) input px and scores (N, K).

    ``divide_by_max``: MLPE's original test, which divides each map by its maximum before padding and blurring
    (docs/reference/mlpe_hsrnet_gcpose.md §1.9); a negative maximum flips the map (docs/reference/defects.md F#3).
    """
    num, joints, h, w = outputs.shape
    border = 10
    coords = np.zeros((num, joints, 2))
    scores = np.zeros((num, joints))
    for i in range(num):
        score_map = outputs[i].copy() / 255 + 0.5
        dr = np.zeros((joints, h + 2 * border, w + 2 * border))
        dr[:, border:-border, border:-border] = outputs[i].copy()
        if divide_by_max:
            dr[:, border:-border, border:-border] /= outputs[i].max(axis=(1, 2))[:, None, None]
        for j in range(joints):
            dr[j] = cv2.GaussianBlur(dr[j], (kernel, kernel), 0)
        for j in range(joints):
            y, x = np.unravel_index(dr[j].argmax(), dr[j].shape)
            dr[j, y, x] = 0
            x -= border
            y -= border
            py, px = np.unravel_index(dr[j].argmax(), dr[j].shape)
            px -= border + x
            py -= border + y
            ln = (px ** 2 + py ** 2) ** 0.5
            if ln > 1e-3:
                x += shift * px / ln
                y += shift * py / ln
            x = max(0, min(x, w - 1))
            y = max(0, min(y, h - 1))
            coords[i, j] = (x * stride + stride / 2, y * stride + stride / 2)
            scores[i, j] = score_map[j, int(round(y) + 1e-9), int(round(x) + 1e-9)]
    return coords, scores
