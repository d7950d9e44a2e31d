"""mmpose RSN/MSPN weights give mmpose's outputs in our model (no mmpose needed here).

tests/data/mmpose/ was made by tools/make_mmpose_fixtures.py in an mmpose 1.3.2 environment: mmpose's own models
(from its configs) filled by cvpack.weights.fill from their keys, one shipped image with a fixed box through
mmpose's own pipeline (crop, RGB + ImageNet normalisation, flip test, MegviiHeatmap decoding). Here the same
mmpose-format checkpoint is rebuilt from the manifest and goes through the one loading path
(cvpack.weights.build_model_with_weights: detection, key mapping, config overrides, strict load), and our
dataset + predictor (our crop box, our normalisation, our flip test and decoder, as overridden) must reproduce
mmpose's heatmaps to 1e-4 and keypoints to 1e-3 px.

Both networks get the same pixels: mmpose's uint8 crop is in the fixture, because OpenCV's ``warpAffine`` rounds
differently across versions (4.10 made the fixture, 5.0 runs the project: the same matrix gives pixels up to 3
levels apart). Our crop box equals mmpose's (checked to 1e-6) and our crop equals its pixels up to that rounding.
"""
import gzip
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from cvpack.data import collate
from cvpack.data.coco import box_to_cs
from cvpack.data.topdown import TopDownDataset, normalize_lut
from cvpack.inference import build_predictor
from cvpack.weights import build_model_with_weights
from cvpack.weights.fill import fill_state_dict

DATA = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'mmpose')


def _fixture():
    with gzip.open(osp.join(DATA, 'manifest.json.gz'), 'rt', encoding='utf-8') as f:
        manifest = json.load(f)
    return manifest, np.load(osp.join(DATA, 'outputs.npz'))


MANIFEST, OUTPUTS = _fixture()


def mmpose_checkpoint(name):
    """The content of model ``name``'s mmpose file (``{'state_dict': filled tensors, 'meta': ...}``, as mmpose saves
    it). Kept in memory: reading files is tested in test_weights_entry_points.py, and MSPN-4's would be 480 MB."""
    state = fill_state_dict(MANIFEST['models'][name]['keys'], seed=MANIFEST['seed'])
    return {'state_dict': state, 'meta': {'mmengine_version': '0.10.7', 'epoch': 210}}


def _sample(cfg, repo_root):
    """Our val sample of the fixture's image and box (our records, crop and normalisation, per ``cfg``)."""
    x, y, w, h = MANIFEST['bbox_xywh']
    center, scale = box_to_cs([x, y, w, h], cfg.DATASET.PIPELINE, 0.75, cfg.DATASET.PIXEL_STD)
    rec = {'image_path': osp.join(repo_root, MANIFEST['image']), 'image_id': 406129, 'bbox': [x, y, w, h],
           'center': np.asarray(center, np.float32), 'scale': np.asarray(scale, np.float32), 'score': 1.0,
           'joints': np.zeros((cfg.DATASET.KEYPOINT.NUM, 3), np.float32)}
    return TopDownDataset(cfg, 'val', records=[rec])[0]


@pytest.mark.parametrize('name', ['RSN-18', 'RSN-50', '2xRSN-50', 'MSPN-1', 'MSPN-2',
                                  pytest.param('MSPN-3', marks=pytest.mark.slow),
                                  pytest.param('MSPN-4', marks=pytest.mark.slow)])
def test_mmpose_weights_reproduce_mmpose(name, repo_root, one_thread):
    record = MANIFEST['models'][name]
    cfg, model, prepared = build_model_with_weights(osp.join(repo_root, record['exp']), name + '.pth',
                                                    ['MODEL.DEVICE', 'cpu'], obj=mmpose_checkpoint(name))
    assert prepared.format == 'mmpose'
    # the one architecture option: mmpose's conv units have no bias (same parameter count as mmpose's model)
    assert cfg.MODEL.CONV_BIAS is False
    assert sum(p.numel() for p in model.parameters()) == record['params']

    sample = _sample(cfg, repo_root)
    # same crop box as mmpose's GetBBoxCenterScale (padding 1.25) + aspect fit
    np.testing.assert_allclose(sample['scale'].numpy() * cfg.DATASET.PIXEL_STD, OUTPUTS[name + '/scale'], rtol=1e-6)
    np.testing.assert_allclose(sample['center'].numpy(), OUTPUTS[name + '/center'], rtol=1e-6)

    # our crop of that box: the same pixels as mmpose's up to warpAffine rounding (see the module docstring)
    mm_crop = OUTPUTS['crop_bgr']
    lut = normalize_lut(cfg.INPUT.MEANS, cfg.INPUT.STDS)
    our_crop = np.round(sample['image'].numpy().transpose(1, 2, 0) * 255 * np.asarray(cfg.INPUT.STDS)
                        + 255 * np.asarray(cfg.INPUT.MEANS)).astype(int)[..., ::-1]   # back to uint8 BGR
    diff = np.abs(our_crop - mm_crop.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.2, (diff.max(), diff.mean())

    # mmpose's pixels through our preprocessing: channel order (DATASET.COLOR_RGB) and INPUT.MEANS/STDS
    crop = mm_crop[..., ::-1] if cfg.DATASET.COLOR_RGB else mm_crop
    image = torch.from_numpy(np.ascontiguousarray(cv2.LUT(np.ascontiguousarray(crop), lut).transpose(2, 0, 1)))
    batch = collate([dict(sample, image=image)])
    predictor = build_predictor(cfg)
    heatmaps = predictor.heatmaps(model, batch['image'])[0].numpy()
    joints = MANIFEST['joints']
    ref = OUTPUTS[name + '/heatmaps']
    assert np.abs(heatmaps[joints] - ref).max() < 1e-4, np.abs(heatmaps[joints] - ref).max()

    inst = predictor(model, batch)[0]
    kp = inst['keypoints']
    assert np.abs(kp[:, :2] - OUTPUTS[name + '/keypoints']).max() < 1e-3
    assert np.abs(kp[:, 2] - OUTPUTS[name + '/scores']).max() < 1e-5
