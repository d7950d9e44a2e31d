"""Time mmpose 1.3.2's eager PyTorch pose networks on the CPU; run by a side environment's python.

    /path/to/mmpose-venv/bin/python tools/bench_mmpose_side.py --models RSN18 --runs 5 --threads 2
    /path/to/mmpose-venv/bin/python tools/bench_mmpose_side.py --serve --threads 2

One-shot: prints one JSON line {model: {"infer": seconds, "mmpose": version}}, the median of ``runs`` eval
forwards. ``--serve`` (used by tools/bench_models.py ``--mmpose-python``, so mmpose's runs interleave with
cvpack's under the same load): prints ``ready``, then answers each stdin line ``infer MODEL`` or ``train MODEL``
with one JSON line {"wall": s, "cpu": s} (one timed call; process CPU seconds of all threads), until EOF.

Inference: eval forward (no_grad, no flip) of a batch of 8 at 256x192 through ``model(images, None,
mode='tensor')`` (backbone + head, the same work as cvpack's eval forward), with mmpose's own config of the
exp. Training step: ``model(images, data_samples, mode='loss')`` (mmpose's losses, its PCK accuracy included),
the sum of the loss terms, backward and a ``torch.optim.Adam`` step (mmpose's optimizer for these configs),
on random targets. Needs only mmpose, mmengine and mmcv's pure-python parts: the modules mmpose imports at
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
BATCH, INPUT_HW = 8, (256, 192)


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


def _import_mmpose():
    sys.meta_path.insert(0, _EmptyModules())
    import mmpose
    import mmpose.models  # noqa: F401  (registers the networks; mmpose.utils.register_all_modules would also
    #                                  import the inferencers, which need pkg_resources)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpose')
    return mmpose


def build_model(name):
    """mmpose's network for ``name`` (a key of CONFIGS), random weights, and its number of heatmap levels."""
    import mmpose
    from mmpose.registry import MODELS
    root = os.path.join(os.path.dirname(mmpose.__file__), '.mim', 'configs', 'body_2d_keypoint', 'topdown_heatmap',
                        'coco')
    # the config file is plain python; its ``_base_`` (runtime settings) is not needed for the model, and
    # mmengine's Config would look the base up through pkg_resources, absent from recent setuptools
    namespace = {}
    filename, stages = CONFIGS[name]
    with open(os.path.join(root, filename)) as f:
        exec(compile(f.read(), filename, 'exec'), namespace)
    model_cfg = namespace['model']
    model_cfg.pop('init_cfg', None)
    model_cfg['backbone'].pop('init_cfg', None)
    head = model_cfg['head']
    if stages and stages > 1:
        model_cfg['backbone']['num_stages'] = head['num_stages'] = stages
        head['level_indices'] = [0, 1, 2, 3] * (stages - 1) + [1, 2, 3, 4]
        head['loss'] = list(head['loss']) * stages
    return MODELS.build(model_cfg).eval(), max(head['level_indices']) + 1


def random_samples(levels, keypoints=17, seed=0):
    """BATCH PoseDataSamples with ``levels`` random target heatmaps (K, H/4, W/4) and unit keypoint weights,
    the fields mmpose's MSPNHead.loss reads."""
    import torch
    from mmpose.structures import MultilevelPixelData, PoseDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    h, w = INPUT_HW[0] // 4, INPUT_HW[1] // 4
    samples = []
    for _ in range(BATCH):
        s = PoseDataSample()
        s.gt_fields = MultilevelPixelData(heatmaps=[torch.rand(keypoints, h, w, generator=g) for _ in range(levels)])
        s.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(levels, 1, keypoints))
        samples.append(s)
    return samples


class Runner:
    """Builds each model once and runs one inference or training step of it on demand."""

    def __init__(self):
        import torch
        self.torch, self.models = torch, {}
        self.x = torch.randn(BATCH, 3, *INPUT_HW, generator=torch.Generator().manual_seed(0))

    def _get(self, name):
        if name not in self.models:
            model, levels = build_model(name)
            opt = self.torch.optim.Adam(model.parameters(), lr=5e-4)
            self.models[name] = (model, opt, random_samples(levels))
        return self.models[name]

    def infer(self, name):
        model = self._get(name)[0].eval()
        with self.torch.no_grad():
            model(self.x, None, mode='tensor')

    def train(self, name):
        model, opt, samples = self._get(name)
        model.train()
        losses = model(self.x, samples, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    def timed(self, what, name):
        if what not in ('infer', 'train') or name not in CONFIGS:
            raise ValueError('expected "infer|train MODEL" with MODEL in %s, got %r %r' % (list(CONFIGS), what, name))
        self._get(name)
        wall, cpu = time.perf_counter(), time.process_time()
        getattr(self, what)(name)
        return {'wall': time.perf_counter() - wall, 'cpu': time.process_time() - cpu}


def serve(runner, lines=sys.stdin, out=sys.stdout):
    """Answer ``infer MODEL`` / ``train MODEL`` lines with {"wall", "cpu"} JSON lines until EOF."""
    print('ready', flush=True, file=out)
    for line in lines:
        if line.strip():
            print(json.dumps(runner.timed(*line.split())), flush=True, file=out)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--models', nargs='+', default=['RSN18'], choices=list(CONFIGS))
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--serve', action='store_true', help='answer "infer|train MODEL" lines on stdin')
    args = parser.parse_args(argv)
    mmpose = _import_mmpose()
    import torch
    torch.set_num_threads(args.threads)
    runner = Runner()
    if args.serve:
        return serve(runner)
    out = {}
    for name in args.models:
        times = [runner.timed('infer', name)['wall'] for _ in range(args.runs + 1)]
        out[name] = {'infer': statistics.median(times[1:]), 'mmpose': mmpose.__version__}
    print(json.dumps(out))


if __name__ == '__main__':
    main()
