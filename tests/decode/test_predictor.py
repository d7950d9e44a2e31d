"""Top-down predictor: flip test, decode, map back, rescoring, dispatch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from easydict import EasyDict as edict

from cvpack.inference import build_predictor


class PoolModel(torch.nn.Module):
    """Channel 0 = 4x4 average pool of the first input channel x 255 x 16 (a one-pixel input dot
    becomes a 255 peak); channel 1 = 0. Not flip-symmetric across channels, so flip_back's swap shows."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images, targets=None):
        pooled = F.avg_pool2d(images[:, :1], 4) * 255 * 16
        return torch.cat([pooled, torch.zeros_like(pooled)], dim=1) + self.dummy


def _cfg(flip, decoder='megvii', rescore='megvii', codec='megvii'):
    return edict(DATASET=edict(PIPELINE='megvii', PIXEL_STD=200, KEYPOINT=edict(FLIP_PAIRS=[[0, 1]])),
                 INPUT_SHAPE=[64, 48], OUTPUT_SHAPE=[16, 12], CODEC=codec,
                 TEST=edict(FLIP=flip, FLIP_SHIFT=False, DECODER=decoder, GAUSSIAN_KERNEL=5, SHIFT_RATIOS=[0.25],
                            RESCORE=rescore, KEYPOINT_THRESH=0.2, PREDICTOR=''))


def _batch(n=1):
    images = torch.zeros(n, 3, 64, 48)
    images[:, 0, 21, 29] = 1.0                                   # heatmap pixel (y 5, x 7)
    return {'image': images, 'center': torch.tensor([[100.0, 200.0]] * n), 'scale': torch.tensor([[0.24, 0.32]] * n),
            'score': [0.8] * n, 'image_id': torch.tensor([7] * n), 'bbox': torch.zeros(n, 4), 'index': list(range(n))}


def test_predictor_without_flip_batch_of_one():
    model = PoolModel().train()
    out = build_predictor(_cfg(flip=False))(model, _batch(1))
    assert model.training                                         # mode restored
    assert len(out) == 1 and out[0]['image_id'] == 7 and out[0]['index'] == 0
    kps = out[0]['keypoints']
    # megvii: symmetric one-hot -> (7, 5 - 0.25) -> input (30, 21) -> crop 48x64 px centred on (100, 200)
    np.testing.assert_allclose(kps[0], [100 - 24 + 30, 200 - 32 + 21, 1.5])
    assert kps[1, 2] == pytest.approx(0.5)                        # empty channel
    assert out[0]['score'] == pytest.approx(0.8 * (1.5 + 0.5) / 2)
    assert out[0]['area'] == pytest.approx(0.24 * 0.32 * 200 ** 2)


def test_flip_test_averages_and_swaps_pairs():
    pred = build_predictor(_cfg(flip=True))
    hm = pred.heatmaps(PoolModel(), _batch(2)['image'])
    # flipped input -> dot at x 47 - 29 = 18 -> pooled x 4 in channel 0; flip_back mirrors it to x 7
    # and swaps it into channel 1: each channel then holds half the peak
    assert hm[0, 0, 5, 7].item() == pytest.approx(127.5) and hm[0, 1, 5, 7].item() == pytest.approx(127.5)
    out = pred(PoolModel(), _batch(2))
    np.testing.assert_allclose(out[1]['keypoints'][:, 2], [1.0, 1.0])


def test_simple_baselines_rescore_and_quarter_decoder():
    cfg = _cfg(flip=False, decoder='quarter', rescore='simple_baselines', codec='msra')
    out = build_predictor(cfg)(PoolModel(), _batch(1))
    kps = out[0]['keypoints']
    np.testing.assert_allclose(kps[0, :2], [100 - 24 + 28, 200 - 32 + 20])   # x * 4, no offset (flat neighbours)
    assert out[0]['score'] == pytest.approx(0.8 * 255)           # channel 1 (0) is below the threshold


class EchoPredictor:
    """A project's predictor, named by TEST.PREDICTOR."""

    def __init__(self, cfg):
        self.cfg = cfg


def test_dispatch():
    """TEST.PREDICTOR '' gives the core top-down predictor for the core pipelines, an error naming the key for
    any other pipeline; a 'module:Class' is built as Class(cfg) whatever the pipeline."""
    cfg = _cfg(flip=False)
    cfg.DATASET.PIPELINE = 'cpn'
    assert type(build_predictor(cfg)).__name__ == 'TopDownPredictor'
    cfg.DATASET.PIPELINE = 'nope'
    with pytest.raises(KeyError, match="no core predictor for DATASET.PIPELINE 'nope'.*TEST.PREDICTOR"):
        build_predictor(cfg)
    cfg.TEST.PREDICTOR = '%s:EchoPredictor' % __name__
    predictor = build_predictor(cfg)
    assert type(predictor).__name__ == 'EchoPredictor' and predictor.cfg is cfg
    cfg.TEST.PREDICTOR = '%s:Nope' % __name__
    with pytest.raises(ImportError, match='TEST.PREDICTOR'):
        build_predictor(cfg)


def test_non_finite_heatmaps_name_the_image_ids_and_boxes_of_the_batch():
    """test.py's predictor turns the decoder's refusal of NaN/inf heatmaps into an error naming the image ids and
    boxes of the bad samples (the decoder alone knows only their positions in the batch)."""
    from cvpack.decode.heatmap import NonFiniteHeatmaps

    class NaNForSecond(PoolModel):
        def forward(self, images, targets=None):
            out = super().forward(images).clone()
            out[1, 1] = float('nan')
            return out

    batch = _batch(3)
    batch['image_id'] = torch.tensor([5, 9, 11])
    batch['bbox'] = torch.tensor([[0.0, 0, 10, 20], [1.5, 2, 30, 40], [0, 0, 5, 5]])
    expected = (r'NaN/inf in 1 of 6 maps \(first: sample 1, joint 1\).*; 1 of the 3 people of the batch: '
                r'image 9 box \[1\.5, 2\.0, 30\.0, 40\.0\]$')
    with pytest.raises(NonFiniteHeatmaps, match=expected) as err:
        build_predictor(_cfg(flip=False))(NaNForSecond(), batch)
    assert err.value.samples == [1] and err.value.image_ids == [9]
