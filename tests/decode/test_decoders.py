"""Decoders against hand-computed cases and the per-joint Megvii reference."""

import cv2
import numpy as np
import pytest
import torch

from cvpack.decode import (decode_argmax, decode_dark, decode_heatmaps, decode_megvii, decode_quarter,
                           flip_back, to_image_coords, to_input_coords)

from cvpack.decode.reference import megvii_reference


def _megvii_target(x_in, y_in, hw=(64, 48), input_hw=(256, 192), kernel=7):
    """One-hot at the floored heatmap position, blurred, peak 255 (docs/reference/rsn_mspn.md §3.4.7)."""
    hm = np.zeros(hw, np.float32)
    hm[int(y_in * hw[0] / input_hw[0]), int(x_in * hw[1] / input_hw[1])] = 1
    hm = cv2.GaussianBlur(hm, (kernel, kernel), 0)
    return hm * (255 / hm.max())


def _random_peaked(rng, n, k, h, w, offset=0.0):
    hm = (rng.random((n, k, h, w)) * 4 + offset).astype(np.float32)
    for i in range(n):
        for j in range(k):
            hm[i, j, rng.integers(0, h), rng.integers(0, w)] += 255
            hm[i, j] = cv2.GaussianBlur(hm[i, j], (7, 7), 0)
    return hm


def test_megvii_symmetric_peak_bias():
    # docs/reference/rsn_mspn.md §5.3 [RUN]: GT input (101, 62.9) -> heatmap (25, 15) -> decoded input (102, 61)
    hm = _megvii_target(101, 62.9)[None, None]
    coords, scores = decode_megvii(hm, kernel=5)
    np.testing.assert_allclose(coords[0, 0], [102.0, 61.0], atol=1e-9)
    assert scores[0, 0] == pytest.approx(1.5)          # perfect 255 peak: 255 / 255 + 0.5
    coords_t, _ = decode_megvii(torch.from_numpy(hm), kernel=5)
    np.testing.assert_array_equal(coords_t, coords)


def test_megvii_diagonal_shift_and_empty_map():
    hm = np.zeros((1, 2, 16, 12), np.float32)
    hm[0, 0, 5, 5], hm[0, 0, 6, 6] = 255, 200            # second max diagonal -> move 0.25 along (1, 1)/sqrt 2
    coords, scores = decode_megvii(hm, kernel=1)           # k=1: no blur
    d = 0.25 / np.sqrt(2)
    np.testing.assert_allclose(coords[0, 0], [(5 + d) * 4 + 2, (5 + d) * 4 + 2])
    assert scores[0, 0] == pytest.approx(1.5)
    # empty map: argmax and second argmax are padded (0, 0) -> no move, clipped to (0, 0); score 0.5
    np.testing.assert_allclose(coords[0, 1], [2.0, 2.0])
    assert scores[0, 1] == pytest.approx(0.5)


@pytest.mark.parametrize('hw,kernel', [((64, 48), 5), ((64, 64), 9), ((64, 48), 21), ((17, 13), 11), ((17, 13), 13)])
def test_megvii_matches_per_joint_reference(hw, kernel):
    rng = np.random.default_rng(kernel)
    hm = _random_peaked(rng, 3, 6, *hw)
    hm[0, 0] = -3.0                                       # all negative: argmax falls in the zero padding
    hm[0, 1] = 0.0
    hm[1, 0] = np.round(hm[1, 0] / 40) * 40               # plateaus: raster-order ties
    hm[2] -= 8.0                                          # mostly negative maps with a positive peak
    hm[2, 3] = _megvii_target(10.5, 20.3, hw=hw, input_hw=(hw[0] * 4, hw[1] * 4))
    ref_c, ref_s = megvii_reference(hm, kernel=kernel)
    coords, scores = decode_megvii(hm, kernel=kernel)
    np.testing.assert_allclose(coords, ref_c, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores, ref_s, rtol=0, atol=1e-6)


def test_quarter_offset_direction():
    hm = np.zeros((1, 3, 16, 12), np.float32)
    hm[0, 0, 6, 5], hm[0, 0, 6, 6], hm[0, 0, 5, 5] = 1.0, 0.6, 0.3   # right and up neighbours higher
    hm[0, 1, 6, 1], hm[0, 1, 6, 2] = 1.0, 0.5                          # x = 1: border rule, no offset
    hm[0, 2] = -1.0                                                    # max <= 0: coords zeroed
    coords, scores = decode_quarter(hm, stride=4)
    np.testing.assert_allclose(coords[0, 0], [5.25 * 4, 5.75 * 4])
    np.testing.assert_allclose(coords[0, 1], [4.0, 24.0])
    np.testing.assert_allclose(coords[0, 2], [0.0, 0.0])
    np.testing.assert_allclose(scores[0], [1.0, 1.0, -1.0])
    argmax_coords, _ = decode_argmax(hm, stride=(4, 2))
    np.testing.assert_allclose(argmax_coords[0, 0], [20.0, 12.0])


@pytest.mark.parametrize('centre,cov', [((20.3, 30.7), ((4, 0), (0, 4))),
                                        ((10.85, 12.15), ((4, 0), (0, 4))),
                                        ((33.5, 40.25), ((4, 0), (0, 4))),
                                        ((21.4, 30.35), ((6, 3), (3, 4))),      # rotated: cross term matters
                                        ((25.7, 33.2), ((5, -3.5), (-3.5, 6)))])
def test_dark_recovers_subpixel_centre(centre, cov):
    h, w = 64, 48
    ys, xs = np.mgrid[0:h, 0:w]
    d = np.stack([xs - centre[0], ys - centre[1]], -1)
    hm = np.exp(-0.5 * np.einsum('hwi,ij,hwj->hw', d, np.linalg.inv(cov), d)).astype(np.float32)
    coords, scores = decode_dark(hm[None, None], kernel=11, stride=1)
    assert np.abs(coords[0, 0] - centre).max() < 0.05
    quarter, _ = decode_quarter(hm[None, None], stride=1)
    assert np.abs(quarter[0, 0] - centre).max() > np.abs(coords[0, 0] - centre).max()
    assert scores[0, 0] == pytest.approx(hm.max())


def test_dispatch_by_name_and_cfg():
    from easydict import EasyDict as edict
    hm = _megvii_target(101, 62.9)[None, None]
    cfg = edict(TEST=edict(DECODER='megvii', GAUSSIAN_KERNEL=5, SHIFT_RATIOS=[0.25]),
                INPUT_SHAPE=[256, 192], OUTPUT_SHAPE=[64, 48])
    np.testing.assert_allclose(decode_heatmaps(cfg, hm)[0][0, 0], [102.0, 61.0])
    np.testing.assert_allclose(decode_heatmaps('argmax', hm)[0][0, 0], [100.0, 60.0])
    with pytest.raises(KeyError, match='unknown decoder'):
        decode_heatmaps('udp2', hm)


def test_flip_back_with_and_without_shift():
    hm = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    out = flip_back(hm, [(1, 2)])
    np.testing.assert_array_equal(out[:, 0], hm[:, 0, :, ::-1])
    np.testing.assert_array_equal(out[:, 1], hm[:, 2, :, ::-1])
    shifted = flip_back(torch.from_numpy(hm), [(1, 2)], shift=True).numpy()
    np.testing.assert_array_equal(shifted[..., 1:], out[..., :-1])
    np.testing.assert_array_equal(shifted[..., 0], out[..., 0])
    np.testing.assert_array_equal(flip_back(out, [(1, 2)]), hm)   # flip twice = identity


def test_image_coords_round_trip():
    rng = np.random.default_rng(0)
    coords = rng.random((3, 17, 2)) * [192, 256]
    center, scale = rng.random((3, 2)) * 500, rng.random((3, 2)) + 0.5
    img = to_image_coords(coords, center, scale, (256, 192))
    np.testing.assert_allclose(to_input_coords(img, center, scale, (256, 192)), coords)
    # the crop centre (W/2, H/2) maps to the box centre; the crop corner to centre - scale*200/2
    corner = to_image_coords(np.array([[[0.0, 0.0], [96.0, 128.0]]]), center[:1], scale[:1], (256, 192))
    np.testing.assert_allclose(corner[0, 0], center[0] - scale[0] * 100)
    np.testing.assert_allclose(corner[0, 1], center[0])


def test_image_coords_are_get_results_bit_for_bit():
    # get_results: scales (float32, from the dataset) *= 200 in place, then x / W_in * scale + cx - scale * 0.5 in
    # float64 (docs/reference/rsn_mspn.md §5.3); a float64 box differed by up to ~1.5e-5 px
    rng = np.random.default_rng(1)
    coords = rng.random((64, 17, 2)) * [192, 256]
    center = (rng.random((64, 2)) * 640).astype(np.float32)
    scale = (rng.random((64, 2)) * 3 + 0.2).astype(np.float32)
    box = scale.copy()
    box *= 200
    want = np.empty_like(coords)
    for i in range(64):
        want[i, :, 0] = coords[i, :, 0] / 192 * box[i][0] + center[i][0] - box[i][0] * 0.5
        want[i, :, 1] = coords[i, :, 1] / 256 * box[i][1] + center[i][1] - box[i][1] * 0.5
    np.testing.assert_array_equal(to_image_coords(coords, center, scale, (256, 192)), want)


def test_megvii_local_path_matches_reference_on_ties():
    """The local path (float64 blur of a region around the peak, cvpack.decode.megvii) must equal the
    per-joint original, ties included."""
    from cvpack.decode import megvii
    rng = np.random.default_rng(5)
    h, w = 64, 48
    ys, xs = np.mgrid[0:h, 0:w]
    maps = []
    for _ in range(60):
        cx, cy = rng.uniform(3, w - 4), rng.uniform(3, h - 4)
        m = 200 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8) + rng.normal(0, 2, (h, w))
        maps.append(m)
    for i in range(20):                       # exact ties: symmetric integer peaks, twin peaks
        m = np.zeros((h, w))
        y, x = rng.integers(5, h - 5), rng.integers(5, w - 5)
        m[y, x] = 255
        if i % 2:
            m[(y + 20) % (h - 5), (x + 11) % (w - 5)] = 255
        maps.append(cv2.GaussianBlur(m, (7, 7), 0))
    hm = np.stack(maps).astype(np.float32).reshape(4, 20, h, w)
    _, local = megvii._peaks_local(hm.reshape(-1, h, w), 5)
    assert local[:70:2].all() and local[1:60:2].all()    # single peaks take the local path,
    assert not local[61::2].any()                        # twin peaks the exact one
    ref_c, ref_s = megvii_reference(hm, kernel=5)
    coords, scores = decode_megvii(hm, kernel=5)
    np.testing.assert_array_equal(coords, ref_c)
    np.testing.assert_array_equal(scores, ref_s)


@pytest.mark.parametrize('decoder', ['megvii', 'quarter', 'argmax', 'dark'])
def test_empty_batch(decoder):
    coords, scores = decode_heatmaps(decoder, np.zeros((0, 17, 64, 48), np.float32))
    assert coords.shape == (0, 17, 2) and scores.shape == (0, 17)


def test_mlpe_divide_by_max_flips_a_negative_map_ours_does_not():
    """docs/reference/defects.md F#3: MLPE's test divides each map by its maximum before blurring. For a positive
    maximum that changes nothing (ours = the MLPE re-statement, bit for bit); for a negative maximum the division
    flips the map and the original decodes the *minimum*, while ours (the undivided map, as Megvii's decoder)
    finds the zero padding's maximum: cell (0, 0), with the low score of the raw value there."""
    rng = np.random.default_rng(21)
    pos = _random_peaked(rng, 2, 5, 64, 48, offset=-1.0)
    for mine, ref in zip(decode_megvii(pos, kernel=21), megvii_reference(pos, kernel=21, divide_by_max=True)):
        np.testing.assert_array_equal(mine, ref)
    hm = np.full((1, 1, 64, 48), -10.0, np.float32)
    dip = np.zeros((64, 48), np.float32)
    dip[40, 30] = 1
    dip = cv2.GaussianBlur(dip, (11, 11), 0)
    hm[0, 0] -= dip * (200 / dip.max())                   # minimum -210 at cell (x 30, y 40)
    hm[0, 0, 10, 12] = -1.0                               # maximum -1 at cell (x 12, y 10)
    orig, orig_score = megvii_reference(hm, kernel=21, divide_by_max=True)
    np.testing.assert_array_equal(np.round((orig[0, 0] - 2) / 4), [30, 40])          # the original: argmin
    assert orig_score[0, 0] == pytest.approx(-210 / 255 + 0.5)
    coords, scores = decode_megvii(hm, kernel=21)
    np.testing.assert_array_equal(coords[0, 0], [2.0, 2.0])                           # ours: cell (0, 0)
    assert scores[0, 0] == pytest.approx(-10 / 255 + 0.5)


@pytest.mark.parametrize('name', ['megvii', 'mmpose_megvii', 'quarter', 'dark', 'argmax'])
def test_non_finite_heatmaps_are_an_error_not_a_keypoint(name):
    """A NaN/inf heatmap decoded to a finite keypoint: all-NaN maps to cell (0, 0) (megvii: input (2, 2)), a peaked
    map with one NaN cell to its peak with score 0.5 (megvii), so a diverged model scored MPII PCKh 0 with exit 0.
    Every decoder now refuses them, naming the first map; finite maps decode as before."""
    hm = np.zeros((2, 3, 64, 48), np.float32)
    hm[:, :, 20, 30] = 255
    coords, _ = decode_heatmaps(name, torch.from_numpy(hm))
    assert np.isfinite(coords).all()
    bad = hm.copy()
    bad[1, 2, 5, 7] = np.nan
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match=r'heatmaps hold NaN/inf in 2 of 6 maps \(first: sample 1, joint 1\): '
                                         r'the model output is not finite'):
        decode_heatmaps(name, torch.from_numpy(bad))
    with pytest.raises(ValueError, match=r'in 6 of 6 maps \(first: sample 0, joint 0\)'):
        decode_heatmaps(name, np.full((2, 3, 64, 48), np.nan, np.float32))
