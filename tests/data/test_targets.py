"""Heatmap targets against hand-computed values and the per-joint loops of the originals (cvpack.data.reference)."""
import numpy as np
import pytest

from cvpack.data.reference import megvii_heatmaps, simple_baselines_target
from cvpack.data.targets import blurred_peak_targets, gaussian_targets

KERNELS = [(15, 15), (11, 11), (9, 9), (7, 7), (5, 5)]


def test_k5_peak_neighbours_support():
    t = blurred_peak_targets(np.array([[100., 100.]]), [2], (256, 192), (64, 48), [5])
    assert t.shape == (1, 1, 64, 48) and t.dtype == np.float32
    m = t[0, 0]
    # one-hot at (int(100/4), int(100/4)) = (25, 25); k=5 -> [1,4,6,4,1]/16 per axis
    assert m[25, 25] == pytest.approx(255, abs=1e-3)
    for r, c in ((24, 25), (26, 25), (25, 24), (25, 26)):
        assert m[r, c] == pytest.approx(170, abs=1e-3)    # 255 * 4/6
    assert m[24, 24] == pytest.approx(255 * 16 / 36, abs=1e-3)
    assert m[23, 25] == pytest.approx(255 / 6, abs=1e-3)
    assert (m > 0).sum() == 25


def test_floor_placement_and_invalid_joints():
    joints = np.array([[27.9, 43.99], [28.0, 44.0], [50., 50.], [60., 60.]])
    t = blurred_peak_targets(joints, [1, 2, 0, 0.5], (256, 192), (64, 48), [5, (7, 7)])
    assert t.shape == (2, 4, 64, 48)
    assert np.unravel_index(t[0, 0].argmax(), (64, 48)) == (10, 6)   # floor(43.99/4), floor(27.9/4)
    assert np.unravel_index(t[0, 1].argmax(), (64, 48)) == (11, 7)
    assert not t[:, 2:].any()                                         # valid 0 and 0.5 (< 1): all zero


def test_border_reflect_max_is_rescaled():
    # joint in row 1, k=5: REFLECT_101 folds taps, row 0 gets (4 + 4)/16 and row 1 (6 + 1)/16,
    # so the max is on row 0 (-> 255) and the joint's own cell gets 255 * 7/8 (the original's quirk)
    t = blurred_peak_targets(np.array([[100., 4.]]), [2], (256, 192), (64, 48), [5])[0, 0]
    assert t[0, 25] == pytest.approx(255, abs=1e-3)
    assert t[1, 25] == pytest.approx(255 * 7 / 8, abs=1e-3)
    assert t[2, 25] == pytest.approx(255 * 4 / 8, abs=1e-3)


def test_blurred_equals_per_joint_reference():
    rng = np.random.RandomState(0)
    for _ in range(20):
        joints = rng.rand(17, 2) * [191, 255]
        joints[:4] = rng.randint(0, 2, (4, 2)) * [191, 255]   # corners: border folding
        valid = rng.randint(0, 3, 17).astype(np.float32)
        fast = blurred_peak_targets(joints, valid, (256, 192), (64, 48), KERNELS)
        for li, k in enumerate(KERNELS):
            np.testing.assert_array_equal(fast[li], megvii_heatmaps(joints, valid, k, (256, 192), (64, 48)))


def test_blurred_every_cell_every_kernel_equals_per_joint_blur():
    """Exhaustive: a joint in each of the 64 x 48 cells (all border classes), each kernel, vs cv2 per joint."""
    rows, cols = np.meshgrid(np.arange(64), np.arange(48), indexing='ij')
    joints = np.stack([cols.ravel() * 4 + 1.5, rows.ravel() * 4 + 2.5], 1)       # 3072 joints
    valid = np.ones(len(joints))
    fast = blurred_peak_targets(joints, valid, (256, 192), (64, 48), KERNELS + [(9, 5)])
    for li, k in enumerate(KERNELS + [(9, 5)]):
        np.testing.assert_array_equal(fast[li], megvii_heatmaps(joints, valid, k, (256, 192), (64, 48)))


def test_blurred_levels_of_mixed_kernels_equal_cv2_each():
    """Levels whose kernels differ in size and shape (the largest half kernel per axis from different levels, a
    small kernel first) are pasted together per joint: each level must still equal its own cv2.GaussianBlur of the
    one-hot, at every cell of a 32 x 24 map (interior, edges, corners), other joints' maps untouched."""
    import cv2
    kernels = [(5, 5), (15, 3), (3, 13), (7, 7)]   # largest half kernel: x 7 from (15, 3), y 6 from (3, 13)
    h, w = 32, 24
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    joints = np.stack([cols.ravel() * 8 + 0.5, rows.ravel() * 8 + 7.9], 1)      # input 256 x 192 -> cells
    valid = np.ones(len(joints))
    fast = blurred_peak_targets(joints, valid, (256, 192), (h, w), kernels)
    assert fast.shape == (len(kernels), h * w, h, w)
    for li, k in enumerate(kernels):
        for j, (r, c) in enumerate(zip(rows.ravel(), cols.ravel())):
            onehot = np.zeros((h, w), np.float32)
            onehot[r, c] = 1
            want = cv2.GaussianBlur(onehot, k, 0)
            want /= want.max() / 255
            np.testing.assert_array_equal(fast[li, j], want, err_msg='kernel %s cell %d,%d' % (k, r, c))


def test_blurred_rejects_valid_joint_outside():
    with pytest.raises(ValueError, match='outside'):
        blurred_peak_targets(np.array([[300., 10.]]), [2], (256, 192), (64, 48), [5])


def test_gaussian_peak_and_truncation():
    t, w = gaussian_targets(np.array([[41., 58.]]), [1], (256, 192), (64, 48), 2)
    assert t.shape == (1, 64, 48) and t.dtype == np.float32 and w.tolist() == [1.0]
    mu = (int(58 / 4 + 0.5), int(41 / 4 + 0.5))                     # (15, 10)
    assert t[0][mu] == 1.0 and np.unravel_index(t[0].argmax(), (64, 48)) == mu
    assert t[0, 15, 11] == pytest.approx(np.exp(-1 / 8), rel=1e-6)
    nz = np.argwhere(t[0] > 0)
    assert nz.min(0).tolist() == [9, 4] and nz.max(0).tolist() == [21, 16]   # 13x13 window (3 sigma)
    assert t[0, 15, 16] == pytest.approx(np.exp(-36 / 8), rel=1e-5) and t[0, 15, 17] == 0


def test_gaussian_weights_outside_and_invisible():
    joints = np.array([[-34., 10.], [-20., 10.], [100., 100.], [195., 100.], [-30., 10.]])
    t, w = gaussian_targets(joints, [1, 1, 0, 1, 1], (256, 192), (64, 48), 2)
    # x=-34: mu = int(-8.5 + 0.5) = -8, br = -1 < 0 -> outside, weight 0.
    # x=-20: mu = int(-4.5) = -4 (truncation toward 0), the window reaches col 2.
    # x=-30: mu = -7, br = 0: not "outside" by the original's test, so weight stays 1 with an empty map.
    assert w.tolist() == [0, 1, 0, 1, 1]
    assert not t[0].any() and not t[2].any() and not t[4].any()
    assert t[1].any() and t[1][:, 3:].max() == 0
    assert t[3, 25, 47] > 0                                             # centre col 49 clipped to the map


def test_gaussian_equals_reference():
    rng = np.random.RandomState(1)
    for sigma, in_hw, out_hw in ((2, (256, 192), (64, 48)), (3, (384, 288), (96, 72))):
        joints = rng.rand(17, 2) * [in_hw[1] + 60, in_hw[0] + 60] - 30
        vis = rng.randint(0, 2, 17).astype(np.float32)
        t, w = gaussian_targets(joints, vis, in_hw, out_hw, sigma)
        rt, rw = simple_baselines_target(joints, vis, sigma, in_hw, out_hw)
        np.testing.assert_array_equal(t, rt)
        np.testing.assert_array_equal(w, rw)
