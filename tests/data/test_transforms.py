"""Top-down geometry: round trips, hand-computed boxes, flips, half body, centre/scale on real annotations."""
import json
import os.path as osp

import numpy as np
import pytest

from cvpack.data import transforms as T
from cvpack.data.meta import COCO


def test_affine_round_trip_and_centre():
    rng = np.random.RandomState(0)
    for _ in range(20):
        center = rng.rand(2) * 500
        scale_px = np.array([150., 200.]) * (0.5 + rng.rand())
        rot = rng.uniform(-80, 80)
        fwd = T.get_affine_transform(center, scale_px, rot, (192, 256))
        inv = T.get_affine_transform(center, scale_px, rot, (192, 256), inv=True)
        pts = rng.rand(17, 2) * 600 - 50
        back = T.affine_points(T.affine_points(pts, fwd), inv)
        assert np.abs(back - pts).max() < 1e-4
        np.testing.assert_allclose(T.affine_points(center, fwd), [96, 128], atol=1e-3)


def test_affine_no_rotation_maps_box_edges():
    # box 300 px wide around (200, 100) onto 192 wide: x0 = 200 - 150 -> 0, x1 = 350 -> 192, scale 0.64
    fwd = T.get_affine_transform([200, 100], [300, 400], 0, (192, 256))
    np.testing.assert_allclose(fwd, [[0.64, 0, -32], [0, 0.64, 64]], atol=1e-5)
    # rotation by 90 degrees about the centre: a point right of the centre goes up in the crop (originals' sign)
    rot = T.get_affine_transform([200, 100], [300, 400], 90, (192, 256))
    np.testing.assert_allclose(T.affine_points([[250, 100]], rot), [[96, 128 - 0.64 * 50]], atol=1e-3)


def test_flip_twice_is_identity_and_swaps_pairs():
    rng = np.random.RandomState(0)
    joints = rng.rand(17, 2) * 400
    vis = rng.randint(0, 3, 17)
    fj, fv = T.flip_joints(joints, vis, 640, COCO.flip_pairs)
    # left wrist (9) takes the mirrored right wrist (10), with its visibility
    assert fj[9, 0] == pytest.approx(639 - joints[10, 0], abs=1e-4) and fj[9, 1] == pytest.approx(joints[10, 1])
    assert fv[9] == vis[10] and fv[0] == vis[0]
    jj, vv = T.flip_joints(fj, fv, 640, COCO.flip_pairs)
    np.testing.assert_allclose(jj, joints, atol=1e-4)
    np.testing.assert_array_equal(vv, vis)
    assert T.flip_center_x([100, 50], 640).tolist() == [539, 50]


def test_a_joint_in_two_flip_pairs_is_an_error(coco_subset, tmp_path):
    """``DATASET.KEYPOINT.FLIP_PAIRS [[1, 2], [2, 3], ...]`` (an override; metadata files are checked) passed: the
    flip permutation was [0, 2, 3, 2, ...], so every flipped sample and the flip test lost joint 1 and copied joint 2.
    Now flip_permutation refuses it, and the dataset build names the key."""
    from cvpack.config.base import merge_from_list
    from cvpack.config.megvii import megvii_config
    from cvpack.data import build_dataset
    from cvpack.data.meta import flip_permutation
    assert flip_permutation(5, [(1, 2), (2, 1), (3, 3)]) == [0, 2, 1, 3, 4]   # a pair repeated or reversed: same
    with pytest.raises(ValueError, match=r'flip pairs \(1, 2\) and \(2, 3\) share joint 2'):
        flip_permutation(5, [(1, 2), (2, 3)])
    with pytest.raises(ValueError, match=r'flip pairs \(1, 2\) and \(1, 3\) share joint 1'):
        T.flip_joints(np.zeros((5, 2)), np.ones(5), 100, [(1, 2), (1, 3)])
    cfg = megvii_config(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    pairs = [[1, 2], [2, 3]] + [list(p) for p in COCO.flip_pairs[2:]]
    merge_from_list(cfg, ['DATASET.KEYPOINT.FLIP_PAIRS', str(pairs)])
    with pytest.raises(ValueError, match=r'DATASET\.KEYPOINT\.FLIP_PAIRS \[\[1, 2\], \[2, 3\], .*\]: flip pairs '
                                         r'\(1, 2\) and \(2, 3\) share joint 2'):
        build_dataset(cfg, 'train')


def test_fit_aspect_and_extend():
    np.testing.assert_allclose(T.fit_aspect([1.0, 1.0], 0.75), [1.0, 1 / 0.75])     # w > 0.75 h -> h = w / 0.75
    np.testing.assert_allclose(T.fit_aspect([0.5, 1.0], 0.75), [0.75, 1.0])         # else w = 0.75 h
    np.testing.assert_allclose(T.fit_aspect([1.5, 1.0], 0.75), [1.5, 2.0])
    np.testing.assert_allclose(T.extend_scale([1.0, 2.0], 0.6, 0.8, 0.05, 0.5, 1.0),
                               [1.05 * 1.3, 2 * 1.05 * 1.8], rtol=1e-6)


def test_half_body_box():
    joints = np.zeros((17, 2), np.float32)
    joints[5:9] = [[10, 10], [30, 10], [10, 50], [30, 50]]        # 4 upper joints
    joints[13:15] = [[10, 90], [30, 100]]                          # 2 lower joints
    vis = np.zeros(17)
    vis[5:9] = 2
    vis[13:15] = 2
    c, s = T.half_body_box(joints, vis, COCO.upper_body_ids, True, 0.5, 0.0, 0.6, 0.8, 0.75)
    # bbox (10..30, 10..50): centre (20, 30); w = 20 * 1.3 = 26, h = 40 -> w < 0.75 h -> w = 30
    np.testing.assert_allclose(c, [20, 30])
    np.testing.assert_allclose(s, [30 / 200, 40 / 200], rtol=1e-6)
    # "lower" drawn, but lower has only 2 (<= 3) joints -> the upper body again
    c2, _ = T.half_body_box(joints, vis, COCO.upper_body_ids, False, 0.5, 0.0, 0.6, 0.8, 0.75)
    np.testing.assert_allclose(c2, c)
    vis[7:9] = 0                                                   # 2 upper + 2 lower: < 3 selected -> abort
    assert T.half_body_box(joints, vis, COCO.upper_body_ids, True, 0.5, 0.5, 0.6, 0.8, 0.75) == (None, None)


def test_center_scale_on_real_annotation(coco_subset):
    with open(osp.join(coco_subset, 'annotations', 'person_keypoints_train2017.json')) as f:
        ann = [a for a in json.load(f)['annotations'] if a['id'] == 441444][0]
    assert ann['bbox'] == [120.46, 133.32, 212.31, 498.58]
    c, s = T.xywh_to_cs_megvii(ann['bbox'])
    np.testing.assert_allclose(c, [120.46 + 212.31 / 2, 133.32 + 498.58 / 2], rtol=1e-6)   # (226.615, 382.61)
    np.testing.assert_allclose(s, [212.31 / 200, 498.58 / 200], rtol=1e-6)
    # Simple Baselines on the same box (unclipped): aspect fit w = 0.75 h, then x1.25
    c, s = T.xywh_to_cs_simple_baselines(ann['bbox'], 0.75)
    np.testing.assert_allclose(c, [226.615, 382.61], rtol=1e-6)
    np.testing.assert_allclose(s, [0.75 * 498.58 / 200 * 1.25, 498.58 / 200 * 1.25], rtol=1e-6)


def _original_get_affine_transform(center, scale, rot, output_size, shift=np.array([0, 0], dtype=np.float32),  # noqa: B008 (the original's signature)
                                   inv=0):
    """The Megvii/HRNet original (``lib/utils/transforms.py``), restated line by line with its dtypes."""
    import cv2

    def get_dir(src_point, rot_rad):
        sn, cs = np.sin(rot_rad), np.cos(rot_rad)
        return [src_point[0] * cs - src_point[1] * sn, src_point[0] * sn + src_point[1] * cs]

    def get_3rd_point(a, b):
        direct = a - b
        return b + np.array([-direct[1], direct[0]], dtype=np.float32)

    scale_tmp = scale * 200.0
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size
    rot_rad = np.pi * rot / 180
    src_dir = get_dir([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center + scale_tmp * shift
    src[1, :] = center + src_dir + scale_tmp * shift
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2:, :] = get_3rd_point(src[0, :], src[1, :])
    dst[2:, :] = get_3rd_point(dst[0, :], dst[1, :])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def test_affine_equals_the_original_bit_for_bit_with_rotation():
    """The direction vector is added in float64 and rounded once, as the original (it differed by up to 5e-3)."""
    rng = np.random.RandomState(3)
    for _ in range(200):
        center = (rng.rand(2) * 600).astype(np.float32)
        scale = (np.array([0.9, 1.2]) * (0.3 + rng.rand())).astype(np.float32)
        rot = float(rng.uniform(-45, 45)) if rng.rand() < 0.8 else 0.0
        for inv in (0, 1):
            ours = T.get_affine_transform(center, scale * 200.0, rot, (192, 256), inv=bool(inv))
            orig = _original_get_affine_transform(center, scale, rot, (192, 256), inv=inv)
            np.testing.assert_array_equal(ours, orig)
