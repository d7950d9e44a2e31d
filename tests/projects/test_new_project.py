"""A new paper with a new pipeline touches no core file (docs/DESIGN.md "Extending").

A project package written into a temporary folder (outside the repo) brings its own dataset, predictor,
evaluator and model; its exp config names the first three as 'module:Class' strings (``DATASET.CLASS``,
``TEST.PREDICTOR``, ``TEST.EVALUATOR``) and its exp scripts are the plain two-line ``train_main`` /
``test_main`` ones. ``python train.py`` and ``python test.py`` run from the exp folder through the core
engine. The toy predictor reads the dot position off the heatmap-sized copy of the input the model passes
through, so the evaluator's error is 0 exactly when every val sample reaches it once and in one piece.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

from cvpack.modeling.megvii_blocks import RSB

PARTS = '''
"""Toy pipeline: 8x8 images with one bright dot; 1 keypoint; metric = mean pixel error of the dot."""
import json
import os.path as osp

import numpy as np
import torch
from torch import nn


def dot(i):
    return (i * 3) % 8, (i * 5 + 1) % 8     # (x, y) of sample i's dot


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, cfg, split):
        self.train, self.n = split == 'train', cfg.DATASET.TOY_LEN

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x, y = dot(i)
        image = torch.zeros(3, 8, 8)
        image[:, y, x] = 1.0
        if self.train:
            return {'image': image, 'target': image[:1].clone()}
        return {'image': image, 'image_id': 100 + i}


class ToyNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, images, targets=None):
        """images (N, 3, 8, 8); train: {'loss_toy'}; eval: (N, 2, 8, 8) = (prediction, input channel 0)."""
        out = self.conv(images)
        if self.training and targets is not None:
            return {'loss_toy': ((out - targets['target']) ** 2).mean()}
        return torch.cat([out, images[:, :1]], 1)


def build_model(cfg):
    return ToyNet(cfg)


class ToyPredictor:
    def __init__(self, cfg):
        pass

    def __call__(self, model, batch):
        maps = model(batch['image'])[:, 1].flatten(1)
        best = maps.argmax(1)
        return [{'image_id': int(i), 'keypoints': np.array([[float(b % 8), float(b // 8), 1.0]]), 'score': 1.0}
                for i, b in zip(batch['image_id'], best)]


class ToyEvaluator:
    def __init__(self, cfg):
        self.n = cfg.DATASET.TOY_LEN

    def __call__(self, instances, output_dir):
        with open(osp.join(output_dir, 'results.json'), 'w') as f:
            json.dump([{'image_id': i['image_id']} for i in instances], f)
        err = [np.hypot(*(i['keypoints'][0, :2] - dot(i['image_id'] - 100))) for i in instances]
        return {'count': len(instances), 'ids': sorted(i['image_id'] for i in instances),
                'error': float(np.mean(err))}
'''

CONFIG = '''
import os.path as osp

from easydict import EasyDict as edict

from cvpack.config import base_config, config_main

cfg = base_config(osp.dirname(osp.abspath(__file__)))
cfg.OUTPUT_DIR = osp.join(cfg.EXP_DIR, 'out')
cfg.TEST_DIR = osp.join(cfg.OUTPUT_DIR, 'test_dir')
cfg.DATASET.update(NAME='TOY', PIPELINE='toy', CLASS='newpaper.parts:ToyDataset', TOY_LEN=5)   # + the core's keys
cfg.TEST.PREDICTOR = 'newpaper.parts:ToyPredictor'
cfg.TEST.EVALUATOR = 'newpaper.parts:ToyEvaluator'
cfg.MODEL.DEVICE = 'cpu'
cfg.DATALOADER.NUM_WORKERS = 0
cfg.SOLVER.IMS_PER_GPU = 2
cfg.SOLVER.MAX_ITER = 2
cfg.SOLVER.CHECKPOINT_PERIOD = 2
cfg.SOLVER.WARMUP_ITERS = 1
cfg.SOLVER.LOG_PERIOD = 1
cfg.TEST.IMS_PER_GPU = 2

if __name__ == '__main__':
    config_main(cfg)
'''

SCRIPTS = {
    'network.py': 'from newpaper.parts import build_model  # noqa: F401\n',
    'train.py': 'from cvpack.engine import train_main\nfrom config import cfg\nfrom network import build_model\n\n'
                "if __name__ == '__main__':\n    train_main(cfg, build_model)\n",
    'test.py': 'from cvpack.engine import test_main\nfrom config import cfg\nfrom network import build_model\n\n'
               "if __name__ == '__main__':\n    test_main(cfg, build_model)\n",
}


def _write_project(root):
    pkg = osp.join(root, 'newpaper')
    exp = osp.join(pkg, 'exps', 'toy.exp')
    os.makedirs(exp)
    files = {osp.join(pkg, '__init__.py'): '', osp.join(pkg, 'parts.py'): PARTS, osp.join(exp, 'config.py'): CONFIG}
    files.update({osp.join(exp, name): text for name, text in SCRIPTS.items()})
    for path, text in files.items():
        with open(path, 'w') as f:
            f.write(textwrap.dedent(text).lstrip())
    return exp


def _run(exp, script, root, repo_root):
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([root, repo_root] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    proc = subprocess.run([sys.executable, script], cwd=exp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, '%s failed:\n%s' % (script, proc.stderr[-3000:])
    return proc


def test_toy_project_trains_and_tests_through_the_core(tmp_path, repo_root):
    root = str(tmp_path)
    exp = _write_project(root)
    _run(exp, 'train.py', root, repo_root)
    out = osp.join(exp, 'out')
    assert osp.isfile(osp.join(out, 'iter-2.pth'))
    with open(osp.join(out, 'log.txt')) as f:
        log = f.read()
    assert 'Iter: 2/2' in log and 'loss_toy' in log          # the project's model computed the loss
    _run(exp, 'test.py', root, repo_root)
    with open(osp.join(out, 'test_dir', 'metrics.json')) as f:
        record = json.load(f)
    metrics = record['metrics']
    # every val sample reached the project's evaluator once, through the project's predictor, image and id paired
    assert record['num_instances'] == 5 and record['checkpoint'].endswith('iter-last.pth')
    assert metrics['count'] == 5 and metrics['ids'] == [100, 101, 102, 103, 104]
    assert metrics['error'] == 0.0
    with open(osp.join(out, 'test_dir', 'results.json')) as f:
        assert sorted(r['image_id'] for r in json.load(f)) == [100, 101, 102, 103, 104]


def test_config_strings_reach_the_project_classes(tmp_path, monkeypatch):
    """The core builders resolve the three strings (and name the key when one is wrong)."""
    import pytest

    from cvpack.data import build_dataset
    from cvpack.evaluation import build_evaluator
    from cvpack.inference import build_predictor
    root = str(tmp_path)
    exp = _write_project(root)
    monkeypatch.syspath_prepend(root)
    monkeypatch.syspath_prepend(exp)
    sys.modules.pop('config', None)
    import config
    cfg = config.cfg
    sys.modules.pop('config', None)
    assert type(build_dataset(cfg, 'val')).__name__ == 'ToyDataset' and len(build_dataset(cfg, 'train')) == 5
    assert type(build_predictor(cfg)).__name__ == 'ToyPredictor'
    assert type(build_evaluator(cfg)).__name__ == 'ToyEvaluator'
    cfg.DATASET.CLASS = 'newpaper.parts:Missing'
    with pytest.raises(ImportError, match="DATASET.CLASS = 'newpaper.parts:Missing'"):
        build_dataset(cfg, 'val')
    cfg.DATASET.CLASS = ''
    with pytest.raises(KeyError, match="no core dataset for DATASET.PIPELINE 'toy'.*DATASET.CLASS"):
        build_dataset(cfg, 'val')


class HalfRSB(RSB):
    """A project's encoder block: the RSB with its output halved (same parameters)."""

    def forward(self, x):
        return super().forward(x) * 0.5


def test_project_block_by_model_backbone(tmp_path):
    """The multi-stage network's encoder block comes from MODEL.BACKBONE 'module:Class' (blocks per layer from
    MODEL.BLOCKS): same parameters as the core 'rsb' block, its own forward."""
    import pytest
    import torch

    from cvpack.config.megvii import megvii_config
    from cvpack.modeling.multistage import build_multistage
    cfg = megvii_config(str(tmp_path))
    cfg.INPUT_SHAPE, cfg.OUTPUT_SHAPE = [64, 48], [16, 12]
    cfg.MODEL.UPSAMPLE_CHANNEL_NUM, cfg.MODEL.BLOCKS, cfg.MODEL.BACKBONE = 32, [1, 1, 1, 1], 'RSN-18'
    torch.manual_seed(0)
    core = build_multistage(cfg).eval()
    cfg.MODEL.BACKBONE = '%s:HalfRSB' % __name__
    torch.manual_seed(0)
    ours = build_multistage(cfg).eval()
    layers = [getattr(ours.stage0.downsample, 'layer%d' % k) for k in (1, 2, 3, 4)]
    assert [len(layer) for layer in layers] == [1, 1, 1, 1] and all(type(b) is HalfRSB for b in layers[0])
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in core.state_dict().items()]
    ours.load_state_dict(core.state_dict())
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert not torch.allclose(ours(x), core(x))      # same weights, the project's forward
    cfg.MODEL.BLOCKS = None
    with pytest.raises(ValueError, match='needs MODEL.BLOCKS'):
        build_multistage(cfg)
    cfg.MODEL.BLOCKS, cfg.MODEL.BACKBONE = [1, 1, 1, 1], '%s:Nope' % __name__
    with pytest.raises(ImportError, match='MODEL.BACKBONE'):
        build_multistage(cfg)


def test_inference_and_evaluation_do_not_import_each_other(repo_root):
    """Rescoring lives in cvpack.inference and import_target in cvpack.utils: no import between the two packages
    (neither absolute nor relative, at module level or inside functions)."""
    import ast
    found = []
    for pkg, other in (('inference', 'evaluation'), ('evaluation', 'inference')):
        folder = osp.join(repo_root, 'cvpack', pkg)
        for name in sorted(os.listdir(folder)):
            if not name.endswith('.py'):
                continue
            with open(osp.join(folder, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        ['.' * node.level + (node.module or '')] if isinstance(node, ast.ImportFrom) else [])
                prefixes = ('..%s.' % other, 'cvpack.%s.' % other)
                found += ['%s/%s: %s' % (pkg, name, m) for m in mods
                          if m in ('..' + other, 'cvpack.' + other) or m.startswith(prefixes)]
    assert found == []
