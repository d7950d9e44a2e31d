"""Time mmpose 1.3.2's eager PyTorch pose networks on the CPU; run by a side environment's python.

    /path/to/mmpose-venv/bin/python tools/bench_mmpose_side.py --models RSN18 --runs 5 --threads 2

Prints one JSON line {model: {"infer": seconds}}: the median of ``runs`` eval forwards (no_grad, no flip)
of a batch of 8 at 256x192 through ``model(images, None, mode='tensor')`` (backbone + head, the same work as
cvpack's eval forward), with mmpose's own config of the exp. Used by tools/bench_models.py
``--mmpose-python``; needs only mmpose, mmengine and mmcv's pure-python parts: the modules mmpose imports at
module level but these networks never run (mmdet, mmcv.ops, torchvision, chumpy) are replaced by empty
modules before importing it.
"""
import argparse
import importlib.abc
import importlib.machinery
import json
import os
import statistics
import sys
import time
from unittest import mock

# mmpose has no 4xRSN-18 config: its RSN-18 config with 4 stages, as its 3xRSN-50 config does for 3 stages
# (level indices of the later stages start at 1; one loss list per stage). MSPN-2stg is mmpose's 2xMSPN-50.
CONFIGS = {'RSN18': ('td-hm_rsn18_8xb32-210e_coco-256x192.py', 1),
           '4xRSN18': ('td-hm_rsn18_8xb32-210e_coco-256x192.py', 4),
           'MSPN2stg': ('td-hm_2xmspn50_8xb32-210e_coco-256x192.py', None)}


class _EmptyModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of these packages give empty mock modules (mmpose imports them at module level only)."""
    prefixes = ('mmdet', 'mmcv.ops', 'mmcv._ext', 'torchvision', 'chumpy')

    def find_spec(self, name, path, target=None):
        if name.startswith(self.prefixes):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = mock.MagicMock(name=spec.name)
        module.__path__, module.__spec__ = [], spec
        return module

    def exec_module(self, module):
        pass


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--models', nargs='+', default=['RSN18'])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    sys.meta_path.insert(0, _EmptyModules())
    import torch
    import mmpose
    import mmpose.models  # noqa: F401  (registers the networks; mmpose.utils.register_all_modules would also
    #                                  import the inferencers, which need pkg_resources)
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    init_default_scope('mmpose')
    torch.set_num_threads(args.threads)
    root = os.path.join(os.path.dirname(mmpose.__file__), '.mim', 'configs', 'body_2d_keypoint', 'topdown_heatmap',
                        'coco')
    out = {}
    for name in args.models:
        if not CONFIGS.get(name):
            continue
        # the config file is plain python; its ``_base_`` (runtime settings) is not needed for the model, and
        # mmengine's Config would look the base up through pkg_resources, absent from recent setuptools
        namespace = {}
        filename, stages = CONFIGS[name]
        with open(os.path.join(root, filename)) as f:
            exec(compile(f.read(), filename, 'exec'), namespace)
        model_cfg = namespace['model']
        model_cfg.pop('init_cfg', None)
        model_cfg['backbone'].pop('init_cfg', None)
        if stages and stages > 1:
            head = model_cfg['head']
            model_cfg['backbone']['num_stages'] = head['num_stages'] = stages
            head['level_indices'] = [0, 1, 2, 3] * (stages - 1) + [1, 2, 3, 4]
            head['loss'] = list(head['loss']) * stages
        model = MODELS.build(model_cfg).eval()
        x = torch.randn(8, 3, 256, 192)
        times = []
        with torch.no_grad():
            for i in range(args.runs + 1):
                t = time.perf_counter()
                model(x, None, mode='tensor')
                times.append(time.perf_counter() - t)
        out[name] = {'infer': statistics.median(times[1:]), 'mmpose': mmpose.__version__}
    print(json.dumps(out))


if __name__ == '__main__':
    main()
