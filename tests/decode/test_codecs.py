"""Heatmap codecs: encode -> decode round trips, score rules, frames, and decoders checked against the codec."""
import os.path as osp

import numpy as np
import pytest
from easydict import EasyDict as edict

from cvpack.codecs import CPNHeatmap, MSRAHeatmap, MegviiHeatmap, build_codec
from cvpack.decode.heatmap import decode_dark, decode_quarter

IN_HW, OUT_HW = (256, 192), (64, 48)
MEGVII_KERNELS = [15, 11, 9, 7, 5]


def _codec(name, decoder, **params):
    if name == 'megvii':
        return MegviiHeatmap(IN_HW, OUT_HW, decoder, params, kernels=MEGVII_KERNELS)
    if name == 'cpn':
        return CPNHeatmap(IN_HW, OUT_HW, decoder, params, kernels=[23, 17, 13, 9])
    return MSRAHeatmap(IN_HW, OUT_HW, decoder, params, sigma=2)


def _finest(heatmaps):
    """The level a model's eval output is compared with: the last (smallest kernel) for multi-level targets."""
    return heatmaps[-1] if heatmaps.ndim == 4 else heatmaps


CASES = [('megvii', 'megvii', dict(kernel=5, shift_ratio=0.25)), ('megvii', 'mmpose_megvii', dict(kernel=5)),
         ('megvii', 'quarter', {}), ('megvii', 'dark', dict(kernel=11)), ('megvii', 'argmax', {}),
         ('cpn', 'megvii', dict(kernel=21, shift_ratio=0.25)),
         ('msra', 'quarter', {}), ('msra', 'dark', dict(kernel=11)), ('msra', 'argmax', {})]


@pytest.mark.parametrize('name,decoder,params', CASES)
def test_round_trip_within_the_documented_quantisation(name, decoder, params):
    """Keypoints at least 4 cells inside the map come back within ``round_trip_tolerance`` (half a cell, plus
    the Megvii decoder's 0.25-cell shift); the error really reaches the quantisation (not a vacuous bound)."""
    codec = _codec(name, decoder, **params)
    rng = np.random.RandomState(0)
    kps = np.stack([rng.uniform(16, 176, 80), rng.uniform(16, 240, 80)], axis=1)
    enc = codec.encode(kps, np.ones(80))
    coords, scores = codec.decode(_finest(enc['heatmaps'])[None])
    err = np.abs(coords[0] - kps).max()
    tol = codec.round_trip_tolerance()
    assert tol == (3.0 if decoder == 'megvii' else 2.0)
    assert 0.9 * tol < err <= tol + 1e-9
    np.testing.assert_allclose(scores, 1.5 if codec.PEAK == 255 else 1.0, atol=1e-6)   # score rule at a full peak


@pytest.mark.parametrize('name,decoder,params', CASES)
def test_cell_centred_keypoints_decode_to_themselves(name, decoder, params):
    """A keypoint on a cell's point of the codec frame (``c * s + CELL_OFFSET * s``) decodes to itself; the
    Megvii decoder moves it 0.25 cell toward its first tied neighbour (the one above: raster order)."""
    codec = _codec(name, decoder, **params)
    cells = np.array([[10, 20], [30, 40], [8, 9]], np.float64)   # >= 8 cells from the border
    kps = codec.to_input(cells)
    np.testing.assert_array_equal(kps[0], [42, 82] if codec.CELL_OFFSET else [40, 80])
    coords, _ = codec.decode(_finest(codec.encode(kps, np.ones(3))['heatmaps'])[None])
    expected = kps - [0, 1.0] if decoder == 'megvii' else kps
    np.testing.assert_allclose(coords[0], expected, atol=1e-6)


def test_score_rule_on_empty_and_invisible_maps():
    kps, vis = np.array([[50.0, 60.0], [70.0, 90.0]]), np.array([2, 0])
    for decoder in ('megvii', 'mmpose_megvii', 'quarter', 'dark', 'argmax'):
        codec = _codec('megvii', decoder, **({'kernel': 5} if decoder == 'megvii' else {}))
        enc = codec.encode(kps, vis)
        np.testing.assert_array_equal(enc['keypoint_weights'], [2, 0])
        _, scores = codec.decode(enc['heatmaps'][-1][None])
        np.testing.assert_allclose(scores[0], [1.5, 0.5], atol=1e-6)      # value / 255 + 0.5
    codec = _codec('msra', 'quarter')
    enc = codec.encode(kps, [1, 0])
    _, scores = codec.decode(enc['heatmaps'][None])
    np.testing.assert_allclose(scores[0], [1.0, 0.0])                      # heatmap maximum


def test_frame_agnostic_decoders_are_mapped_into_the_megvii_frame():
    """quarter / dark on Megvii targets: + s/2 (floor placement) and value / 255 + 0.5, from the raw decoders."""
    hm = _codec('megvii', 'megvii').encode(np.array([[33.0, 101.0]]), [1])['heatmaps'][-1][None]
    for decoder, raw_fn in (('quarter', decode_quarter), ('dark', lambda h, stride: decode_dark(h, 11, stride))):
        raw_xy, raw_score = raw_fn(hm, stride=(4.0, 4.0))
        xy, score = _codec('megvii', decoder, **({'kernel': 11} if decoder == 'dark' else {})).decode(hm)
        np.testing.assert_allclose(xy, raw_xy + 2.0)
        np.testing.assert_allclose(score, raw_score / 255 + 0.5)


def test_megvii_decoders_refused_on_unit_peak_targets():
    for decoder in ('megvii', 'mmpose_megvii'):
        with pytest.raises(ValueError, match=r"TEST\.DECODER '%s' does not fit CODEC 'msra'.*peak 255" % decoder):
            MSRAHeatmap(IN_HW, OUT_HW, decoder)
    with pytest.raises(KeyError, match=r'TEST\.DECODER'):
        MegviiHeatmap(IN_HW, OUT_HW, 'udp')


def test_hsrnet_exp_with_megvii_decoder_is_an_error(repo_root):
    """Before: TEST.DECODER megvii on an HSRNet exp silently gave scores ~0.5 (raw / 255 + 0.5 of unit peaks)."""
    from cvpack.config import clone
    from cvpack.exp import load_exp
    from cvpack.inference import build_predictor
    exp = osp.join(repo_root, 'projects/HSRNet/exps/hsrnet59.256x192.coco')
    with pytest.raises(ValueError, match=r"TEST\.DECODER 'megvii' does not fit CODEC 'msra'"):
        load_exp(exp, ['TEST.DECODER', 'megvii'], build=False)     # at resolution now (cvpack.config.schema)
    cfg, _ = load_exp(exp, ['TEST.DECODER', 'dark'], build=False)
    wrong = clone(cfg)                                                # a config changed after resolution: the
    wrong.TEST.DECODER = 'megvii'                                     # codec still refuses it when built
    assert wrong.CODEC == 'msra'
    with pytest.raises(ValueError, match=r"TEST\.DECODER 'megvii' does not fit CODEC 'msra'"):
        build_predictor(wrong)
    codec = build_codec(cfg)
    assert (type(codec), codec.decoder, codec.decoder_params, codec.sigma) == (MSRAHeatmap, 'dark', {'kernel': 11}, 2)


def test_presets_choose_the_codec_once(tmp_path):
    from cvpack.config.cpn import cpn_config
    from cvpack.config.megvii import megvii_config
    from cvpack.config.simple_baselines import simple_baselines_config
    megvii = build_codec(megvii_config(str(tmp_path)))
    assert (type(megvii), megvii.kernels, megvii.decoder_params) == \
        (MegviiHeatmap, [[15, 15], [11, 11], [9, 9], [7, 7], [5, 5]], {'kernel': 5, 'shift_ratio': 0.25})
    cpn = build_codec(cpn_config(str(tmp_path)))
    assert (type(cpn), cpn.decoder_params['kernel'], cpn.CELL_OFFSET) == (CPNHeatmap, 21, 0.5)
    sb = build_codec(simple_baselines_config(str(tmp_path), input_shape=(384, 288)))
    assert (type(sb), sb.sigma, sb.stride, sb.CELL_OFFSET) == (MSRAHeatmap, 3, (4.0, 4.0), 0.0)


def test_config_errors_name_the_key():
    cfg = edict(INPUT_SHAPE=[256, 192], OUTPUT_SHAPE=[64, 48], DATASET=edict(), CODEC=None,
                TEST=edict(DECODER='megvii', GAUSSIAN_KERNEL=5, SHIFT_RATIOS=[0.25]))
    with pytest.raises(KeyError, match='CODEC None'):
        build_codec(cfg)
    cfg.CODEC = 'megvii'
    codec = build_codec(cfg)                     # inference-only config: decoding works, encoding says what is missing
    assert codec.decode(np.zeros((1, 1, 64, 48), np.float32))[1][0, 0] == 0.5
    with pytest.raises(ValueError, match=r'DATASET\.TRAIN\.GAUSSIAN_KERNELS'):
        codec.encode(np.zeros((1, 2)), [1])


def test_every_decoder_states_its_conventions():
    from cvpack.codecs import CODECS, DECODER_CONVENTIONS
    from cvpack.decode.heatmap import DECODERS
    assert set(DECODER_CONVENTIONS) == set(DECODERS)
    assert set().union(*(c.DECODERS for c in CODECS.values())) == set(DECODERS)


@pytest.mark.parametrize('kind', ['megvii', 'simple_baselines', 'cpn'])
def test_datasets_encode_with_the_codec(kind, coco_subset, tmp_path):
    """Training targets come from ``dataset.codec.encode`` (the codec of cfg.CODEC); an unfit TEST.DECODER
    already fails when the dataset is built."""
    from cvpack.config.cpn import cpn_config
    from cvpack.config.megvii import megvii_config
    from cvpack.config.simple_baselines import simple_baselines_config
    from cvpack.data import build_dataset
    make = {'megvii': megvii_config, 'simple_baselines': simple_baselines_config, 'cpn': cpn_config}[kind]
    cfg = make(str(tmp_path))
    cfg.DATASET.ROOT = coco_subset
    ds = build_dataset(cfg, 'train')
    assert type(ds.codec) is {'megvii': MegviiHeatmap, 'simple_baselines': MSRAHeatmap, 'cpn': CPNHeatmap}[kind]
    calls, encode = [], ds.codec.encode
    ds.codec.encode = lambda kps, vis: calls.append(encode(kps, vis)) or calls[-1]
    ds.seed(0)
    sample = ds[0]
    assert len(calls) == 1 and np.shares_memory(sample['target'].numpy(), calls[0]['heatmaps'])
    assert sample['target'].max().item() == ds.codec.PEAK
    np.testing.assert_array_equal(sample['target_weight'].numpy(), calls[0]['keypoint_weights'])
    if kind == 'simple_baselines':
        cfg.TEST.DECODER = 'mmpose_megvii'
        with pytest.raises(ValueError, match=r"TEST\.DECODER 'mmpose_megvii' does not fit CODEC 'msra'"):
            build_dataset(cfg, 'train')


def test_config_schema_knows_every_codec():
    """CODEC is validated at config resolution (cvpack/config/schema.py) against the same names as CODECS."""
    from cvpack.codecs import CODECS
    from cvpack.config.schema import SCHEMA
    assert {c.lower() for c in SCHEMA['CODEC'].choices} == set(CODECS)
