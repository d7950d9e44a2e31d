"""Detectron2 Keypoint R-CNN checkpoints (model zoo .pkl, GCPose authors' .pth) onto our GCPose exps.

The manifest (tests/data/detectron2_keypoint_rcnn_manifest.json, written from Detectron2's module definitions by
projects/GCPose/tools/make_detectron2_manifest.py) stands in for the real files: checkpoints in their format are
built from it with fixed-seed random values, read back through cvpack.safe_load, converted and loaded strictly.
"""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from cvpack.config import clone
from cvpack.exp import load_exp
from cvpack.safe_load import load_file
from projects.GCPose.gcpose import build_model
from projects.GCPose.gcpose.detectron2_format import (D2_PIXEL_MEAN, Detectron2FormatError, apply_overrides,
                                                      convert, convert_file, detect, map_key)

MANIFEST = osp.join(osp.dirname(__file__), '..', '..', 'data', 'detectron2_keypoint_rcnn_manifest.json')


@pytest.fixture(scope='module')
def manifest():
    with open(MANIFEST) as f:
        return json.load(f)


def _exp_cfg(repo_root, name):
    return clone(load_exp(osp.join(repo_root, 'projects', 'GCPose', 'exps', name), build=False)[0])   # editable


def _arrays(keys, seed=0):
    """Fixed-seed random numpy arrays of the manifest's shapes (running_var > 0, counters int64)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, shape in keys.items():
        if k.endswith('num_batches_tracked'):
            out[k] = np.array(int(rng.integers(1, 1000)), dtype=np.int64)
        else:
            a = rng.random(shape, dtype=np.float32)
            out[k] = a + 0.5 if k.endswith('running_var') else a - 0.5
    return out


def _meta_tensors(keys):
    """Shape-only stand-ins (meta device): the full conversion path without the memory of a real R-101."""
    return {k: torch.empty(s, dtype=torch.long if k.endswith('num_batches_tracked') else torch.float32,
                           device='meta') for k, s in keys.items()}


def _frozen_counters(model):
    from cvpack.modeling.backbones.resnet import FrozenBatchNorm2d
    return {'%s.num_batches_tracked' % n for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)}


def test_explicit_names():
    """A hand-written sample of the name map (the same-shape norms/convs a shape check cannot tell apart)."""
    expected = {
        'backbone.bottom_up.stem.conv1.weight': 'backbone.body.conv1.weight',
        'backbone.bottom_up.stem.conv1.norm.running_mean': 'backbone.body.bn1.running_mean',
        'backbone.bottom_up.res2.0.shortcut.weight': 'backbone.body.layer1.0.downsample.0.weight',
        'backbone.bottom_up.res3.2.conv2.norm.running_var': 'backbone.body.layer2.2.bn2.running_var',
        'backbone.bottom_up.res5.0.shortcut.norm.bias': 'backbone.body.layer4.0.downsample.1.bias',
        'backbone.bottom_up.res4.22.conv3.weight': 'backbone.body.layer3.22.conv3.weight',
        'backbone.fpn_lateral2.weight': 'backbone.fpn.lateral.0.weight',
        'backbone.fpn_output5.bias': 'backbone.fpn.output.3.bias',
        'proposal_generator.rpn_head.anchor_deltas.weight': 'rpn.head.anchor_deltas.weight',
        'roi_heads.box_predictor.cls_score.weight': 'roi_heads.box_head.cls_score.weight',
        'roi_heads.box_head.fc2.bias': 'roi_heads.box_head.fc2.bias',
        'roi_heads.keypoint_head.conv_fcn1.weight': 'roi_heads.keypoint_head.convs.0.weight',
        'roi_heads.keypoint_head.conv_fcn8.bias': 'roi_heads.keypoint_head.convs.7.bias',
        'roi_heads.keypoint_head.score_lowres.weight': 'roi_heads.keypoint_head.score_lowres.weight',
        'roi_heads.keypoint_head.conv_channel.bias': 'roi_heads.keypoint_head.input_proj.bias',
        'roi_heads.keypoint_head.MHSA_5.norm1.num_batches_tracked':
            'roi_heads.keypoint_head.gcms.4.norm1.num_batches_tracked',
        'roi_heads.keypoint_head.MHSA_1.conv_fc.weight': 'roi_heads.keypoint_head.gcms.0.conv.weight',
        'roi_heads.keypoint_head.MHSA_1.MHSA.to_qk.weight': 'roi_heads.keypoint_head.gcms.0.mhsa.qk.weight',
        'roi_heads.keypoint_head.MHSA_5.MHSA.to_v.weight': 'roi_heads.keypoint_head.gcms.4.mhsa.v.weight',
        'roi_heads.keypoint_head.MHSA_1.MHSA.pos_emb.rel_height': 'roi_heads.keypoint_head.gcms.0.mhsa.rel_h',
        'roi_heads.keypoint_head.MHSA_5.MHSA.pos_emb.rel_width': 'roi_heads.keypoint_head.gcms.4.mhsa.rel_w',
    }
    assert {k: map_key(k) for k in expected} == expected
    # no suffix matching: near-misses are not placed
    for k in ('module.backbone.bottom_up.stem.conv1.weight', 'backbone.bottom_up.res6.0.conv1.weight',
              'roi_heads.mask_head.mask_fcn1.weight', 'backbone.bottom_up.stem.conv1.norm.weight.extra'):
        assert map_key(k) is None


@pytest.mark.parametrize('variant', ['zoo_R50', 'zoo_R101', 'gcpose_R50', 'gcpose_R101'])
def test_manifest_keys_all_placed_and_model_filled(repo_root, manifest, variant):
    """Every manifest key lands on a distinct model key of the same shape; every model tensor is filled from the
    file except the FrozenBN counters (Detectron2's FrozenBatchNorm2d has none; set to 0); strict load passes."""
    keys = manifest['variants'][variant]
    cfg = _exp_cfg(repo_root, manifest['exps'][variant])
    out = convert({'model': _meta_tensors(keys), '__author__': 'Detectron2 Model Zoo'}, cfg)
    with torch.device('meta'):
        model = build_model(apply_overrides(cfg, out['cfg']))
    model.load_state_dict(out['state_dict'], strict=True, assign=True)
    placed = {map_key(k): k for k in keys}
    assert len(placed) == len(keys) and None not in placed
    assert all(tuple(out['state_dict'][o].shape) == tuple(keys[s]) for o, s in placed.items())
    synthesised = set(model.state_dict()) - set(placed)
    assert synthesised == _frozen_counters(model)
    assert out['dropped'] == ['__author__ (checkpoint metadata / training state)']
    # a bare state dict (the authors' released model_r50.pth may be one; Detectron2 wraps it as {'model': ...})
    bare = convert(_meta_tensors(keys), cfg)
    assert bare['dropped'] == [] and set(bare['state_dict']) == set(out['state_dict'])


def test_zoo_pkl_round_trip(repo_root, manifest, tmp_path):
    """A zoo-format .pkl (numpy arrays) -> safe_load -> convert -> strict load into the R-50 baseline exp: every
    value arrives unchanged at its mapped key."""
    keys = manifest['variants']['zoo_R50']
    arrays = _arrays(keys, seed=0)
    path = tmp_path / 'model_final_a6e10b.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'model': arrays, '__author__': 'Detectron2 Model Zoo'}, f, protocol=4)
    obj = load_file(str(path))
    assert detect(obj)
    cfg = _exp_cfg(repo_root, 'keypoint_rcnn.R50.coco')
    out = convert(obj, cfg)
    assert out['cfg'] == {'MODEL.RESNET.STRIDE_IN_1X1': True, 'MODEL.RESNET.NORM': 'FrozenBN',
                          'DATASET.COLOR_RGB': False, 'INPUT.PIXEL_MEAN': D2_PIXEL_MEAN,
                          'INPUT.PIXEL_STD': [1.0, 1.0, 1.0]}
    model = build_model(apply_overrides(cfg, out['cfg']))
    model.load_state_dict(out['state_dict'], strict=True)
    state = model.state_dict()
    for k, a in arrays.items():
        assert torch.equal(state[map_key(k)], torch.from_numpy(a)), k
    assert all(int(state[k]) == 0 for k in _frozen_counters(model))
    assert model.backbone.body.layer2[0].conv1.stride == (2, 2) and model.backbone.body.layer2[0].conv2.stride == (1, 1)


def test_gcpose_authors_pth_round_trip(repo_root, manifest, tmp_path):
    """The authors' Detectron2 v0.5 training output: torch.save({'model': tensors, 'optimizer', 'scheduler',
    'iteration'}) with the GCM keys; training state is reported as dropped."""
    keys = manifest['variants']['gcpose_R50']
    tensors = {k: torch.from_numpy(a) for k, a in _arrays(keys, seed=1).items()}
    path = tmp_path / 'model_final.pth'
    torch.save({'model': tensors, 'optimizer': {'state': {}, 'param_groups': []}, 'scheduler': {'last_epoch': 3},
                'iteration': 2159999}, str(path))
    obj = load_file(str(path))
    assert detect(obj)
    cfg = _exp_cfg(repo_root, 'gcpose.R50.coco')
    out = convert(obj, cfg)
    assert sorted(out['dropped']) == sorted('%s (checkpoint metadata / training state)' % k
                                            for k in ('optimizer', 'scheduler', 'iteration'))
    model = build_model(apply_overrides(cfg, out['cfg']))
    model.load_state_dict(out['state_dict'], strict=True)
    state = model.state_dict()
    for k, t in tensors.items():
        assert torch.equal(state[map_key(k)], t), k
    # the GCM BatchNorm counters come from the file (nn.BatchNorm2d keeps them), not the FrozenBN rule
    assert int(state['roi_heads.keypoint_head.gcms.0.norm1.num_batches_tracked']) == \
        int(tensors['roi_heads.keypoint_head.MHSA_1.norm1.num_batches_tracked'])


def test_protocol2_pickle_with_legacy_entries(repo_root, manifest, tmp_path):
    """A Python-2-era pickle (protocol 2: array bytes as latin-1 strings, read with encoding='latin1' as
    Detectron2 does) holding the legacy entries of old checkpoints: pixel_mean / pixel_std become the config's
    mean / std, cell anchors equal to ours are dropped, different ones are refused."""
    keys = manifest['variants']['zoo_R50']
    model = _meta_tensors(keys)
    sample = {k: a for k, a in _arrays({k: keys[k] for k in list(keys)[:6]}, seed=2).items()}
    legacy = {'pixel_mean': np.array([103.5, 116.0, 123.5], np.float32).reshape(3, 1, 1),
              'pixel_std': np.array([1.0, 2.0, 3.0], np.float32).reshape(3, 1, 1)}
    for i, s in enumerate((32, 64, 128, 256, 512)):   # Detectron2 generate_cell_anchors, ratios 0.5, 1, 2
        legacy['proposal_generator.anchor_generator.cell_anchors.%d' % i] = np.array(
            [[-w / 2, -a * w / 2, w / 2, a * w / 2] for a in (0.5, 1.0, 2.0) for w in [(s * s / a) ** 0.5]],
            np.float32)
    path = tmp_path / 'old.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'model': dict(sample, **legacy), '__author__': 'Detectron2 Model Zoo'}, f, protocol=2)
    obj = load_file(str(path))
    for k, a in sample.items():
        assert np.array_equal(obj['model'][k], a)
    obj['model'] = dict(model, **{k: v for k, v in obj['model'].items() if k not in sample})
    cfg = _exp_cfg(repo_root, 'keypoint_rcnn.R50.coco')
    out = convert(obj, cfg)
    assert out['cfg']['INPUT.PIXEL_MEAN'] == [103.5, 116.0, 123.5] and out['cfg']['INPUT.PIXEL_STD'] == [1, 2, 3]
    assert 'pixel_mean (read into INPUT.PIXEL_MEAN)' in out['dropped']
    assert sum('cell_anchors' in d for d in out['dropped']) == 5
    obj['model']['proposal_generator.anchor_generator.cell_anchors.1'] = legacy[
        'proposal_generator.anchor_generator.cell_anchors.0']
    with pytest.raises(Detectron2FormatError, match=r'cell_anchors\.1: .*ours') as e:
        convert(obj, cfg)
    assert e.value.mismatched and not e.value.unplaced and not e.value.unfilled


def test_errors_name_every_key(repo_root, manifest):
    """Wrong depth, wrong head, wrong class count, foreign keys: one error naming all of them, with a hint."""
    cfg50 = _exp_cfg(repo_root, 'keypoint_rcnn.R50.coco')
    with pytest.raises(Detectron2FormatError) as e:
        convert({'model': _meta_tensors(manifest['variants']['zoo_R101'])}, cfg50)
    assert len(e.value.unplaced) == 17 * 15 and not e.value.unfilled and not e.value.mismatched
    assert 'backbone.bottom_up.res4.22.conv3.norm.running_var' in str(e.value)
    assert 'ResNet-101 (res4 has 23 blocks)' in str(e.value)
    # the authors' GCPose weights on the stock baseline: GCM keys unplaced, conv_fcn1 512 -> 512 mismatched
    with pytest.raises(Detectron2FormatError) as e:
        convert({'model': _meta_tensors(manifest['variants']['gcpose_R50'])}, cfg50)
    assert len(e.value.unplaced) == 2 + 2 * 16 and 'roi_heads.keypoint_head.MHSA_5.MHSA.pos_emb.rel_width' in \
        ' '.join(e.value.unplaced)
    assert e.value.mismatched == ['roi_heads.keypoint_head.conv_fcn1.weight (512, 512, 3, 3) -> '
                                  'roi_heads.keypoint_head.convs.0.weight (512, 256, 3, 3)']
    assert e.value.unfilled == ['roi_heads.keypoint_head.convs.0.weight']
    assert 'use a gcpose.* exp' in str(e.value)
    # zoo weights on a GCPose exp: every GCM tensor unfilled
    with pytest.raises(Detectron2FormatError, match='use a keypoint_rcnn') as e:
        convert({'model': _meta_tensors(manifest['variants']['zoo_R50'])}, _exp_cfg(repo_root, 'gcpose.R50.coco'))
    assert len([k for k in e.value.unfilled if '.gcms.' in k]) == 2 * 14
    # a COCO 80-class box predictor and a mask head
    keys = dict(manifest['variants']['zoo_R50'])
    keys['roi_heads.box_predictor.cls_score.weight'] = [81, 1024]
    keys['roi_heads.mask_head.mask_fcn1.weight'] = [256, 256, 3, 3]
    model = _meta_tensors(keys)
    model['backbone.fpn_output3.bias'] = 'not an array'
    with pytest.raises(Detectron2FormatError) as e:
        convert({'model': model}, cfg50)
    assert e.value.unplaced == ['roi_heads.mask_head.mask_fcn1.weight']
    assert e.value.mismatched == ["model entry 'backbone.fpn_output3.bias' is a str, not an array",
                                  'roi_heads.box_predictor.cls_score.weight (81, 1024) -> '
                                  'roi_heads.box_head.cls_score.weight (2, 1024)']
    assert e.value.unfilled == ['backbone.fpn.output.1.bias', 'roi_heads.box_head.cls_score.weight']
    assert not detect({'state_dict': {}}) and not detect({'model': {'resnet_top.conv.weight': 0}})


def test_non_finite_weights_are_named(repo_root, manifest, tmp_path):
    """Weights of a diverged run (NaN/inf): converted and loaded without a word, the model's NaN boxes were dropped
    at inference (keypoint and box AP 0, exit 0). The conversion names each such tensor and the file."""
    from cvpack.safe_load import CheckpointError
    model = _meta_tensors(manifest['variants']['zoo_R50'])
    conv = np.zeros((128, 128, 3, 3), np.float32)
    conv[0, 0, 1, 1] = np.nan
    bias = np.array([0.0, np.inf, -np.inf, 0.0], np.float32)
    model['backbone.bottom_up.res3.0.conv2.weight'] = conv
    model['roi_heads.box_predictor.bbox_pred.bias'] = bias
    cfg = _exp_cfg(repo_root, 'keypoint_rcnn.R50.coco')
    with pytest.raises(Detectron2FormatError) as e:
        convert({'model': model}, cfg)
    assert e.value.mismatched == ['backbone.bottom_up.res3.0.conv2.weight holds NaN/inf (1 of 147456 values)',
                                  'roi_heads.box_predictor.bbox_pred.bias holds NaN/inf (2 of 4 values)']
    path = tmp_path / 'diverged.pth'
    torch.save({'model': {k: torch.from_numpy(v) for k, v in (('backbone.bottom_up.res3.0.conv2.weight', conv),)},
                'iteration': 7}, path)
    with pytest.raises(CheckpointError, match=r'(?s)diverged\.pth.*res3\.0\.conv2\.weight holds NaN/inf'):
        convert_file(str(path), cfg)


def test_registered_in_every_exp_config(repo_root, tmp_path):
    """add_gcpose_config names this module under MODEL.WEIGHT_FORMATS, keeping formats the core registered."""
    import importlib
    from projects.GCPose.gcpose.preset import detection_config
    from projects.GCPose.gcpose import add_gcpose_config
    for exp in ('gcpose.R50.coco', 'gcpose.R101.coco', 'keypoint_rcnn.R50.coco', 'keypoint_rcnn.R101.coco'):
        formats = _exp_cfg(repo_root, exp).MODEL.WEIGHT_FORMATS
        assert formats == {'detectron2': 'projects.GCPose.gcpose.detectron2_format'}, exp
        module = importlib.import_module(formats['detectron2'])
        assert module.detect is detect and module.convert is convert
    cfg = detection_config(str(tmp_path / 'exp'))
    cfg.MODEL.WEIGHT_FORMATS = {'other': 'some.module'}
    add_gcpose_config(cfg)
    assert cfg.MODEL.WEIGHT_FORMATS == {'other': 'some.module',
                                        'detectron2': 'projects.GCPose.gcpose.detectron2_format'}


def test_r101_baseline_exp_matches_r50(repo_root):
    """keypoint_rcnn.R101.coco differs from the R-50 baseline only in the trunk and its ImageNet file."""
    r50, r101 = _exp_cfg(repo_root, 'keypoint_rcnn.R50.coco'), _exp_cfg(repo_root, 'keypoint_rcnn.R101.coco')
    assert r101.MODEL.BACKBONE == 'resnet101' and r101.MODEL.PRETRAINED.endswith('resnet101-5d3b4d8f.pth')
    for cfg in (r50, r101):
        cfg.MODEL.pop('BACKBONE'), cfg.MODEL.pop('PRETRAINED')
        cfg.pop('ROOT_DIR', None), cfg.pop('OUTPUT_DIR', None)
    assert r50.MODEL == r101.MODEL and r50.INPUT == r101.INPUT and r50.SOLVER == r101.SOLVER
    assert r50.TEST == r101.TEST and r50.DATASET == r101.DATASET


def test_code_in_a_detectron2_checkpoint_never_runs(repo_root, tmp_path, http_root, evil):
    """A zoo-style .pkl / authors'-style .pth whose model dict hides a __reduce__ calling os.system is refused by
    the converter's entry (convert_file -> cvpack.safe_load), from a path or a 127.0.0.1 URL, naming the file."""
    from cvpack.safe_load import CheckpointError, UnsafeFileError
    from projects.GCPose.gcpose.detectron2_format import convert_file
    root, base = http_root
    model = {'backbone.bottom_up.stem.conv1.weight': np.zeros((64, 3, 7, 7), np.float32), 'pixel_mean': evil}
    with open(root / 'model_final_evil.pkl', 'wb') as f:
        pickle.dump({'model': model, '__author__': 'Detectron2 Model Zoo'}, f, protocol=2)
    torch.save({'model': {'backbone.bottom_up.stem.conv1.weight': torch.zeros(1)}, 'iteration': evil},
               str(root / 'model_final_evil.pth'))
    cfg = _exp_cfg(repo_root, 'keypoint_rcnn.R50.coco')
    for name in ('model_final_evil.pkl', 'model_final_evil.pth'):
        for source in (str(root / name), base + name):
            with pytest.raises(UnsafeFileError, match=r'%s.*(posix|os)\.system' % name.replace('.', r'\.')):
                convert_file(source, cfg)
    assert not osp.exists(evil.marker)
    # a safe file that is not Detectron2's, and one that does not fit: both name the file
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1)}}, str(root / 'mmpose.pth'))
    with pytest.raises(CheckpointError, match=r'mmpose\.pth: not a Detectron2 checkpoint'):
        convert_file(str(root / 'mmpose.pth'), cfg)
    with open(root / 'partial.pkl', 'wb') as f:
        pickle.dump({'model': {'backbone.bottom_up.stem.conv1.weight': np.zeros((64, 3, 7, 7), np.float32)}}, f)
    with pytest.raises(CheckpointError, match=r'(?s)partial\.pkl: .*left unfilled: backbone\.body\.bn1\.weight'):
        convert_file(base + 'partial.pkl', cfg)


def test_committed_manifest_is_the_generators(repo_root, manifest, tmp_path):
    """The JSON in tests/data is exactly what projects/GCPose/tools/make_detectron2_manifest.py writes."""
    import importlib.util
    path = osp.join(repo_root, 'projects', 'GCPose', 'tools', 'make_detectron2_manifest.py')
    spec = importlib.util.spec_from_file_location('make_detectron2_manifest', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(tmp_path / 'm.json')])
    assert (tmp_path / 'm.json').read_text() == open(MANIFEST).read()
    assert json.loads((tmp_path / 'm.json').read_text()) == manifest
    counts = {n: len(k) for n, k in manifest['variants'].items()}
    assert counts == {'zoo_R50': 313, 'zoo_R101': 568, 'gcpose_R50': 347, 'gcpose_R101': 602}
