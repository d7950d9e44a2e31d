import cv2
import numpy as np
import pytest

from cvpack.data.meta import COCO
from cvpack.vis import draw_skeleton, save_png


def test_draw_skeleton_colours_and_threshold(tmp_path):
    image = np.zeros((100, 120, 3), np.uint8)
    kps = np.zeros((1, 17, 3))
    kps[0, 15] = (20, 20, 1.0)       # left ankle
    kps[0, 13] = (80, 20, 1.0)       # left knee: link (15, 13) is the first skeleton entry
    kps[0, 16] = (50, 80, 0.1)       # right ankle below the threshold: not drawn
    out = draw_skeleton(image, kps, COCO, kp_thresh=0.2)
    assert image.sum() == 0                                       # input untouched
    assert tuple(out[20, 50]) == COCO.skeleton_colors[0]          # middle of the left shin
    assert tuple(out[20, 20]) == COCO.keypoint_colors[15]
    assert out[75:85, 45:55].sum() == 0
    same = draw_skeleton(image, [{'keypoints': kps[0]}], COCO, kp_thresh=0.2)
    np.testing.assert_array_equal(same, out)
    path = save_png(tmp_path / 'sub' / 'vis.png', out)
    np.testing.assert_array_equal(cv2.imread(path), out)
    with pytest.raises(ValueError, match='17'):
        draw_skeleton(image, np.zeros((1, 16, 3)), COCO)
