"""Shared helpers of the RSN / MSPN tests: exp loading, reference state-dict lists, random targets."""
import contextlib
import gzip
import json
import os

import torch

from cvpack.tools.complexity import load_exp

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
# (h, w) small shapes per dataset: 64x48 / 16x12 (COCO aspect), 64x64 / 16x16 (MPII)
SMALL = {'COCO': ['INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]'],
         'MPII': ['INPUT_SHAPE', '[64, 64]', 'OUTPUT_SHAPE', '[16, 16]']}


@contextlib.contextmanager
def one_thread():
    """Many tiny ops: on the shared 2-core CI machine 2 OpenMP threads were 20-50x slower than 1 (measured)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def exp_dir(project, exp):
    return os.path.join(REPO, 'projects', project, 'exps', exp)


def build(project, exp, opts=(), device='cpu'):
    """(cfg, model) of an exp, with no pretrained weights read."""
    with torch.device(device):
        return load_exp(exp_dir(project, exp), ['MODEL.PRETRAINED', ''] + list(opts))


def load_ref(name):
    """The original's state_dict listing (spec ref_state_dict_<name>.json): (metadata, [[name, shape, kind]])."""
    with gzip.open(os.path.join(TESTS, 'data', 'megvii_ref_state_dicts', name + '.json.gz'), 'rt') as f:
        ref = json.load(f)
    return ref, ref.pop('state_dict')


def assert_matches_ref(model, name):
    """Same names, shapes, order, parameter/buffer kinds and dtypes as the original model."""
    meta, ref = load_ref(name)
    params = dict(model.named_parameters())
    ours = [[k, list(v.shape), 'parameter' if k in params else 'buffer'] for k, v in model.state_dict().items()]
    assert [r[0] for r in ours] == [r[0] for r in ref]
    assert ours == ref
    assert [n for n, _ in model.named_children()] == meta['top_level_modules']
    assert sum(p.numel() for p in model.parameters()) == meta['num_parameters']
    for k, v in model.state_dict().items():
        assert v.dtype == (torch.int64 if k.endswith('num_batches_tracked') else torch.float32), k
    return ref


def random_targets(cfg, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = cfg.DATASET.KEYPOINT.NUM
    h, w = cfg.OUTPUT_SHAPE
    return {'target': torch.rand(n, 5, k, h, w, generator=g) * 255,
            'target_weight': torch.randint(0, 3, (n, k), generator=g).float()}
