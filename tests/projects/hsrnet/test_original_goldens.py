"""HSRNet's Simple Baselines harness against numbers computed by the original code (Shiyijie66/HSR-MSNet 599fc97,
``lib/dataset/coco.py`` + ``JointsDataset.py`` + ``lib/core/inference.py``, run on the shipped COCO subset in a
scratch copy). The goldens are written here as numbers; docs/reference/defects.md F#17, F#18 and following.
"""
import numpy as np
import pytest
import torch

from cvpack.config.simple_baselines import simple_baselines_config
from cvpack.data.build import build_dataset


class _Replay:
    """The original's draws in our call order: randn (scale), rand (rotation?), [randn (rotation)], rand (flip)."""

    def __init__(self, randn, rand):
        self.n, self.r = list(randn), list(rand)

    def randn(self):
        return self.n.pop(0)

    def rand(self):
        return self.r.pop(0)


def _cfg(tmp_path, coco_subset, **test):
    cfg = simple_baselines_config(str(tmp_path), input_shape=(256, 192))
    cfg.DATASET.ROOT = coco_subset
    for k, v in test.items():
        cfg.TEST[k] = v
    return cfg


def _sums(image):
    return [float(image[c].double().sum()) for c in range(3)]


def test_default_input_is_bgr_as_the_original(tmp_path, coco_subset):
    """The original never converts cv2.imread's BGR image: Normalize's RGB-ordered mean/std meet B, G, R (F#17)."""
    cfg = _cfg(tmp_path, coco_subset, USE_GT_BBOX=False)
    assert cfg.DATASET.COLOR_RGB is False
    ds = build_dataset(cfg, 'val')
    # the original's val crops (detection boxes #0 and #5 of image 785): per-channel sums and two pixels
    gold = {0: ([45362.14179065917, 48791.797142871656, 66243.43014448695], -1.278791069984436, 1.803398847579956),
            5: ([77277.93946892861, 85445.62967573339, 103357.83678334951], 1.906413197517395, 2.1868410110473633)}
    for i, (sums, p0, p2) in gold.items():
        assert ds.records[i]['image_path'].endswith('000000000785.jpg')
        image = ds[i]['image']
        np.testing.assert_allclose(_sums(image), sums, rtol=0, atol=1e-6)
        assert (float(image[0, 100, 90]), float(image[2, 100, 90])) == (p0, p2)


def test_rgb_option_swaps_the_planes(tmp_path, coco_subset):
    cfg = _cfg(tmp_path, coco_subset, USE_GT_BBOX=False)
    bgr = build_dataset(cfg, 'val')[0]['image']
    cfg.DATASET.COLOR_RGB = True
    rgb = build_dataset(cfg, 'val')[0]['image']
    # same pixels, planes swapped, each normalised with its slot's statistics
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close((rgb * std + mean).flip(0), bgr * std + mean, rtol=0, atol=1e-6)


@pytest.mark.parametrize('name, randn, rand, sums', [
    # sample of 000000535506.jpg (no rotation, no flip) and of 000000463557.jpg (no rotation, no flip); the
    # original's draws with np.random.seed(i) / random.seed(i); the scale then is float32 x float32 (NumPy 1)
    ('000000535506.jpg', [1.764052345967664], [0.8444218515250481, 0.7579544029403025],
     [-58500.15785381943, -51746.69662243128, -35426.25497094169]),
    ('000000463557.jpg', [-0.4167578474054706], [0.9560342718892494, 0.9478274870593494],
     [-26418.96859627124, -24595.24478709884, -14585.12097231485]),
])
def test_train_crop_scale_is_float32_as_the_original(tmp_path, coco_subset, name, randn, rand, sums):
    """The scale factor multiplies the float32 scale in float32 (F#18): a float64 product moved the crop by ~1e-5
    of its size, enough to change pixels of these crops by one grey level."""
    ds = build_dataset(_cfg(tmp_path, coco_subset), 'train')
    [i] = [j for j, r in enumerate(ds.records) if r['image_path'].endswith(name)]
    ds.rng_for = lambda index: _Replay(randn, rand)
    np.testing.assert_allclose(_sums(ds[i]['image']), sums, rtol=0, atol=1e-6)


def test_predictions_are_the_originals_float32_bits(tmp_path):
    """Flip test with the shift, quarter decoder, ``transform_preds`` and the float32 ``all_preds`` / area of the
    original's ``validate`` (F#19): goldens from the original on two detection boxes of the shipped val subset."""
    from cvpack.inference.topdown import TopDownPredictor
    cfg = simple_baselines_config(str(tmp_path), input_shape=(256, 192))
    heat = torch.from_numpy((np.random.RandomState(3).rand(2, 17, 64, 48) * 0.5).astype(np.float32))
    # the original _xywh2cs of detections #0 and #3 (float32)
    center = torch.tensor([[389.6639404296875, 212.47979736328125], [398.1623229980469, 210.8740234375]])
    scale = torch.tensor([[1.5635638236999512, 2.084751605987549], [1.5854640007019043, 2.113952159881592]])
    batch = dict(image=torch.zeros(2, 3, 256, 192), center=center, scale=scale, score=torch.ones(2),
                 image_id=[785, 785])
    out = TopDownPredictor(cfg)(lambda images: heat, batch)
    gold = [[[303.3421936035156, 406.29656982421875], [339.1738586425781, 126.15804290771484],
             [440.1540222167969, 126.15804290771484], [492.2728271484375, 175.0194091796875]],
            [[398.1623229980469, 166.28285217285156], [290.8132019042969, 400.7994079589844],
             [505.5114440917969, 400.7994079589844], [452.66265869140625, 219.13165283203125]]]
    maxvals = [[0.4972870349884033, 0.49560385942459106, 0.49560385942459106, 0.49573197960853577],
               [0.4940561354160309, 0.4940010905265808, 0.4940010905265808, 0.48974645137786865]]
    for n in range(2):
        assert out[n]['keypoints'][:4, :2].tolist() == gold[n]
        assert out[n]['keypoints'][:4, 2].tolist() == maxvals[n]
    assert [o['area'] for o in out] == [130385.6875, 134063.8125]
