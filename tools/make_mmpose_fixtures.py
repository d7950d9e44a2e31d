"""Make the mmpose equivalence fixtures in tests/data/mmpose/ (run in the mmpose side environment, never by CI).

    ../.mmpose-venv/bin/python tools/make_mmpose_fixtures.py [--stub ../shared/tools/mmp_stub.py] [--only RSN-18]

For RSN-18, RSN-50, 2xRSN-50 and MSPN 1-4 stages, this builds mmpose's own model from the config it ships
(``mmpose/.mim/configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_*``), fills every tensor of its state dict with
``cvpack.weights.fill.fill_state_dict`` (a per-key seeded fill that the test reproduces without mmpose), runs one
shipped image with a fixed box through mmpose's own test pipeline and ``test_step`` (what ``inference_topdown``
does: GetBBoxCenterScale, TopdownAffine, PoseDataPreprocessor RGB + ImageNet mean/std, flip test, MegviiHeatmap
decoding) and writes:

* ``manifest.json.gz``: per model, mmpose's state-dict keys and shapes in order, its parameter count, its config;
* ``outputs.npz``: per model, mmpose's flip-averaged heatmaps of a few joints (float32), all keypoints (image px),
  keypoint scores, and the box centre/scale mmpose used; once, the uint8 crop mmpose's TopdownAffine made (BGR).
  The crop is stored because OpenCV's ``warpAffine`` rounds differently across versions (4.10 here, 5.0 in the
  project's environment: the same matrix gives pixels up to 3 levels apart), so the test feeds both networks the
  same pixels and checks our own crop box separately.

tests/weights/test_mmpose_equivalence.py rebuilds the state dicts, converts them and compares.
"""
import argparse
import gzip
import importlib.util
import json
import os
import os.path as osp
import sys

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OUT = osp.join(ROOT, 'tests', 'data', 'mmpose')
IMAGE = 'dataset/coco_subset/images/val2017/000000406129.jpg'
BBOX_XYWH = [163.59, 154.5, 199.46, 437.67]          # its annotation's box (a full-body person)
JOINTS = [0, 9, 16]                                  # heatmaps stored for these joints (nose, l-wrist, r-ankle)
SEED = 0
CONFIGS = 'configs/body_2d_keypoint/topdown_heatmap/coco/'
MODELS = {   # name: (mmpose config, our exp)
    'RSN-18': ('td-hm_rsn18_8xb32-210e_coco-256x192.py', 'projects/RSN/exps/RSN18.coco'),
    'RSN-50': ('td-hm_rsn50_8xb32-210e_coco-256x192.py', 'projects/RSN/exps/RSN50.coco'),
    '2xRSN-50': ('td-hm_2xrsn50_8xb32-210e_coco-256x192.py', 'projects/RSN/exps/2xRSN50.coco'),
    'MSPN-1': ('td-hm_mspn50_8xb32-210e_coco-256x192.py', 'projects/MSPN/exps/mspn.1xstg.coco'),
    'MSPN-2': ('td-hm_2xmspn50_8xb32-210e_coco-256x192.py', 'projects/MSPN/exps/mspn.2xstg.coco'),
    'MSPN-3': ('td-hm_3xmspn50_8xb32-210e_coco-256x192.py', 'projects/MSPN/exps/mspn.3xstg.coco'),
    'MSPN-4': ('td-hm_4xmspn50_8xb32-210e_coco-256x192.py', 'projects/MSPN/exps/mspn.4xstg.coco'),
}


def _load_fill():
    """cvpack/weights/fill.py by path: the side environment need not have cvpack's dependencies."""
    spec = importlib.util.spec_from_file_location('cvpack_fill', osp.join(ROOT, 'cvpack', 'weights', 'fill.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stub_pkg_resources():
    """mmengine's ``get_installed_path`` imports ``pkg_resources`` (setuptools), absent from the side environment;
    a stand-in whose lookup fails makes it fall back to ``importlib`` (its own code path for that case)."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import types

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name):
            raise DistributionNotFound(name)
        sys.modules['pkg_resources'] = types.SimpleNamespace(DistributionNotFound=DistributionNotFound,
                                                             get_distribution=get_distribution)


def _pipeline_batch(model):
    """What ``mmpose.apis.inference_topdown`` feeds ``test_step`` for the fixed image and box (same steps: the
    config's test pipeline + pseudo_collate); built here so the crop it made can be saved too."""
    from mmengine.dataset import Compose, pseudo_collate
    x, y, w, h = BBOX_XYWH
    info = dict(img_path=osp.join(ROOT, IMAGE), bbox=np.array([[x, y, x + w, y + h]], np.float32),
                bbox_score=np.ones(1, np.float32))
    info.update(model.dataset_meta)
    return pseudo_collate([Compose(model.cfg.test_dataloader.dataset.pipeline)(info)])


def run_model(name, fill):
    import mmpose
    import torch
    from mmengine.config import Config
    from mmpose.apis import inference as mmp_inference
    from mmpose.apis import init_model
    # init_model's revert_sync_batchnorm tests isinstance against mmcv.ops.SyncBatchNorm, which the stub replaces;
    # these configs use plain BN (norm_cfg=dict(type='BN')), so there is nothing to revert.
    mmp_inference.revert_sync_batchnorm = lambda m: m
    config_file, exp = MODELS[name]
    cfg = Config.fromfile(osp.join(osp.dirname(mmpose.__file__), '.mim', CONFIGS, config_file))
    cfg.model.backbone.init_cfg = None            # MSPN's configs name torchvision's ResNet-50: not needed here
    cfg.model.test_cfg.output_heatmaps = True
    model = init_model(cfg, None, device='cpu').eval()
    state = model.state_dict()
    manifest = [(k, list(v.shape)) for k, v in state.items()]
    model.load_state_dict(fill.fill_state_dict(manifest, seed=SEED), strict=True)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    batch = _pipeline_batch(model)
    with torch.no_grad():
        sample = model.test_step(batch)[0]
    heatmaps = sample.pred_fields.heatmaps.detach().cpu().numpy().astype(np.float32)   # (K, 64, 48)
    pred = sample.pred_instances
    params = sum(v.numel() for v in model.parameters())
    record = {'config': CONFIGS + config_file, 'exp': exp, 'params': int(params), 'keys': manifest,
              'heatmap_abs_max': float(np.abs(heatmaps).max())}
    outputs = {
        'heatmaps': heatmaps[JOINTS], 'keypoints': np.asarray(pred.keypoints[0], np.float64),
        'scores': np.asarray(pred.keypoint_scores[0], np.float64),
        'center': np.asarray(sample.metainfo['input_center'], np.float64).reshape(2),
        'scale': np.asarray(sample.metainfo['input_scale'], np.float64).reshape(2),
        # the uint8 crop mmpose's TopdownAffine made (H, W, 3), BGR as loaded, before its data preprocessor
        'crop_bgr': batch['inputs'][0].numpy().transpose(1, 2, 0).copy(),
    }
    print('%-9s params %d, heatmaps |max| %.3f, keypoint 0 %s' % (name, params, record['heatmap_abs_max'],
                                                                   outputs['keypoints'][0]))
    return record, outputs


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--stub', default=osp.join(ROOT, '..', '..', 'shared', 'tools', 'mmp_stub.py'),
                   help="mmp_stub.py (stubs mmdet, mmcv.ops, torchvision, chumpy, which RSN/MSPN never use)")
    p.add_argument('--only', nargs='*', default=None, help='model names (default: all)')
    p.add_argument('--out', default=OUT)
    args = p.parse_args()
    if args.stub and osp.isfile(args.stub):
        sys.path.insert(0, osp.dirname(osp.abspath(args.stub)))
        __import__(osp.splitext(osp.basename(args.stub))[0])
    _stub_pkg_resources()
    fill = _load_fill()
    names = args.only or list(MODELS)
    manifest = {'image': IMAGE, 'bbox_xywh': BBOX_XYWH, 'joints': JOINTS, 'seed': SEED, 'models': {}}
    arrays = {}
    for name in names:
        record, outputs = run_model(name, fill)
        manifest['models'][name] = record
        crop = outputs.pop('crop_bgr')
        if 'crop_bgr' in arrays and not np.array_equal(arrays['crop_bgr'], crop):
            raise RuntimeError('mmpose made different crops for the same box')
        arrays['crop_bgr'] = crop
        arrays.update({'%s/%s' % (name, k): v for k, v in outputs.items()})
    os.makedirs(args.out, exist_ok=True)
    with gzip.open(osp.join(args.out, 'manifest.json.gz'), 'wt', encoding='utf-8') as f:
        json.dump(manifest, f)
    np.savez_compressed(osp.join(args.out, 'outputs.npz'), **arrays)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
