"""Test-only exp parts: a tiny dataset, model, predictor and evaluator for the engine tests.

Copied into temporary exp folders (so the exp scripts can ``import toy_parts``) and imported by path in
in-process tests. The train samples draw augmentation noise from the *global* numpy RNG and the model uses
dropout (global torch RNG): these tests check that the engine restores the global RNG states. The real
datasets (TopDownDataset, CPNDataset) draw from their own RandomState instead, which the engine saves
separately; tests/engine/test_resume_real_data.py covers that path.
"""
import json
import os.path as osp

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

H = W = 8


class ToyTrain(Dataset):
    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        base = torch.linspace(-1, 1, H * W).reshape(1, H, W) * (i + 1) / self.n
        noise = float(np.random.rand())  # global numpy RNG, like the real augmentations
        image = base.repeat(3, 1, 1) + noise
        target = torch.full((2, H // 2, W // 2), float(i % 3))
        return {'image': image.float(), 'target': target, 'target_weight': torch.ones(2), 'index': i}


class ToyVal(Dataset):
    def __init__(self, n=7):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = torch.full((3, H, W), i / self.n)
        return {'image': image, 'image_id': 100 + i, 'index': i, 'score': 1.0,
                'center': torch.tensor([4.0, 4.0]), 'scale': torch.tensor([1.0, 1.0])}


class ToyNet(nn.Module):
    def __init__(self, nan_at=0, nan_grad_at=0, plain=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        # plain: no BatchNorm and no dropout, so a batch and its split into micro-batches give the same gradient
        self.bn = nn.Identity() if plain else nn.BatchNorm2d(4)
        self.drop = 0.0 if plain else 0.2
        self.head = nn.Conv2d(4, 2, 1)
        self.nan_at, self.nan_grad_at, self.calls = int(nan_at), int(nan_grad_at), 0

    def forward(self, images, targets=None):
        """images (N, 3, 8, 8) -> eval: heatmaps (N, 2, 4, 4); train: {'loss_hm', 'loss_aux'} scalars."""
        x = F.relu(self.bn(self.conv(images)))
        x = F.dropout(x, self.drop, self.training)
        out = self.head(x)
        if not (self.training and targets is not None):
            return out
        self.calls += 1
        loss = F.mse_loss(out, targets['target'])
        aux = 1e-3 * out.abs().mean()
        if self.nan_at and self.calls == self.nan_at:
            aux = aux * float('nan')
        if self.nan_grad_at and self.calls == self.nan_grad_at:
            # a finite loss (0) whose gradient is NaN (0 * d sqrt(u)/du at u = 0 = 0 * inf), as sqrt/norm of a
            # zero vector does in real models: the loss guard cannot see it, the weights become NaN
            aux = aux + 0 * torch.sqrt(out.sum() * 0)
        return {'loss_hm': loss, 'loss_aux': aux}

    def load_pretrained(self, source):
        """Stand-in for an ImageNet init (the trainer's MODEL.PRETRAINED protocol): a local state dict file."""
        from cvpack.modeling.pretrained import load_mapped, load_state_dict
        return load_mapped(self, load_state_dict(source), lambda key: key)


def build_model(cfg):
    m = cfg.MODEL
    return ToyNet(m.get('TOY_NAN_AT', 0), m.get('TOY_NAN_GRAD_AT', 0), m.get('TOY_PLAIN', False))


def dataset_builder(cfg, split):
    return ToyTrain(cfg.DATASET.TOY_TRAIN_LEN) if split == 'train' else ToyVal(cfg.DATASET.TOY_VAL_LEN)


def collate(batch):
    return default_collate(batch)


def predictor_builder(cfg):
    def predict(model, batch):
        heat = model(batch['image']).float().cpu()
        return [{'image_id': int(batch['image_id'][j]), 'index': int(batch['index'][j]),
                 'keypoints': np.zeros((2, 3), np.float32), 'score': float(heat[j].mean())}
                for j in range(heat.shape[0])]
    return predict


def evaluator_builder(cfg):
    def evaluate(instances, output_dir):
        ids = [inst['image_id'] for inst in instances]
        with open(osp.join(output_dir, 'results.json'), 'w') as f:
            json.dump([{'image_id': i, 'score': inst['score']} for i, inst in zip(ids, instances)], f)
        score = float(np.mean([inst['score'] for inst in instances])) if instances else 0.0
        # score / neg_score: metrics that change as the toy trains (best-checkpoint tests, either direction)
        return {'count': len(ids), 'unique': len(set(ids)), 'ids': sorted(ids), 'score': score, 'neg_score': -score}
    return evaluate


CONFIG_PY = '''import os.path as osp
from cvpack.config import base_config, config_main
from easydict import EasyDict as edict

cfg = base_config(osp.dirname(osp.abspath(__file__)))
cfg.DATASET = edict(NAME='TOY', TOY_TRAIN_LEN=10, TOY_VAL_LEN=7)
cfg.SOLVER.IMS_PER_GPU = 2
cfg.SOLVER.MAX_ITER = 4
cfg.SOLVER.CHECKPOINT_PERIOD = 4
cfg.SOLVER.WARMUP_ITERS = 1
cfg.SOLVER.LOG_PERIOD = 1
cfg.SOLVER.BASE_LR = 1e-2
cfg.DATALOADER.NUM_WORKERS = 0
cfg.TEST.IMS_PER_GPU = 2
cfg.TEST.USE_GT_BBOX = True
cfg.MODEL.TOY_NAN_AT = 0
cfg.MODEL.TOY_NAN_GRAD_AT = 0
cfg.MODEL.TOY_PLAIN = False
if __name__ == '__main__':
    config_main(cfg)
'''

NETWORK_PY = '''from toy_parts import build_model  # noqa: F401
'''

TRAIN_PY = '''import os.path as osp
import torch
from cvpack.engine import train_main
from config import cfg
from network import build_model
import toy_parts as t

if __name__ == '__main__':
    torch.set_num_threads(1)
    model = train_main(cfg, build_model, dataset_builder=t.dataset_builder, collate_fn=t.collate,
                       predictor_builder=t.predictor_builder, evaluator_builder=t.evaluator_builder)
    # one file per rank, to compare parameters across ranks (the process group is gone by now)
    import os
    rank = int(os.environ.get('RANK', 0))
    torch.save({k: v.detach().cpu() for k, v in model.named_parameters()},
               osp.join(cfg.OUTPUT_DIR, 'params_rank%d.pt' % rank))
    import json, sys
    json.dump(sys.argv, open(osp.join(cfg.OUTPUT_DIR, 'argv_rank%d.json' % rank), 'w'))
'''

TEST_PY = '''import torch
from cvpack.engine import test_main
from config import cfg
from network import build_model
import toy_parts as t

if __name__ == '__main__':
    torch.set_num_threads(1)
    test_main(cfg, build_model, dataset_builder=t.dataset_builder, predictor_builder=t.predictor_builder,
              evaluator_builder=t.evaluator_builder, collate_fn=t.collate)
'''


def write_exp(folder, name='toy.exp'):
    """Write a runnable exp folder (config/network/train/test + this module) and return its path."""
    import os
    import shutil
    exp = osp.join(str(folder), name)
    os.makedirs(exp, exist_ok=True)
    for fname, text in (('config.py', CONFIG_PY), ('network.py', NETWORK_PY), ('train.py', TRAIN_PY),
                        ('test.py', TEST_PY)):
        with open(osp.join(exp, fname), 'w') as f:
            f.write(text)
    shutil.copyfile(__file__, osp.join(exp, 'toy_parts.py'))
    return exp
