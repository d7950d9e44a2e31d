"""Training-sample throughput of the top-down pipelines (decode + augment + affine + targets + normalise).

One process, one thread (``cv2.setNumThreads(1)``, ``torch.set_num_threads(1)``), on the shipped COCO subset:

    PYTHONPATH=$PWD python tools/bench_data.py [--root dataset/coco_subset] [--samples 430] [--no-baseline]

``--baseline`` (default on) also times a per-joint re-statement of the original Megvii ``__getitem__``
(deep copy, strided ``img[:, ::-1]`` flip, one ``GaussianBlur`` per joint and kernel, ToTensor + Normalize in
torch) on the same records and the same machine load, so the speed-up is measured, not assumed.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from cvpack.config.megvii import megvii_config  # noqa: E402
from cvpack.config.simple_baselines import simple_baselines_config  # noqa: E402
from cvpack.data import build_dataset  # noqa: E402
from cvpack.data import transforms as T  # noqa: E402


def _baseline_sample(ds, rec):
    """The original per-sample loop structure (megvii train), for timing only."""
    tr = ds.cfg.DATASET.TRAIN
    rng = ds.rng
    d = copy.deepcopy(rec)
    img = cv2.imread(d['image_path'], cv2.IMREAD_COLOR)
    joints, vis = d['joints'][:, :2].astype(np.float64), d['joints'][:, 2:].copy()
    center, scale = d['center'], d['scale']
    scale = T.fit_aspect(T.extend_scale(scale, tr.X_EXTENTION, tr.Y_EXTENTION, tr.BASIC_EXTENTION,
                                        rng.rand(), rng.rand()), ds.w_h_ratio)
    scale = scale * 0.8 * rng.uniform(0.75, 1.25)
    rot = rng.uniform(-45, 45) if rng.rand() <= 0.5 else 0
    if rng.rand() <= 0.5:
        img = img[:, ::-1, :]
        joints, v = T.flip_joints(joints, vis[:, 0], img.shape[1], ds.flip_pairs)
        joints, vis = joints.astype(np.float64), v[:, None]
        center = T.flip_center_x(center, img.shape[1])
    trans = T.get_affine_transform(center, scale * 200, rot, ds.input_hw[::-1])
    crop = cv2.warpAffine(img, trans, (ds.input_hw[1], ds.input_hw[0]), flags=cv2.INTER_LINEAR)
    x = torch.from_numpy(crop.transpose(2, 0, 1).copy()).float().div(255)
    x = x.sub(torch.tensor(ds.cfg.INPUT.MEANS)[:, None, None]).div(torch.tensor(ds.cfg.INPUT.STDS)[:, None, None])
    for i in range(len(joints)):
        if vis[i, 0] > 0:
            joints[i] = np.dot(trans, np.array([joints[i, 0], joints[i, 1], 1.0]))
            if not (0 <= joints[i, 0] <= ds.input_hw[1] - 1 and 0 <= joints[i, 1] <= ds.input_hw[0] - 1):
                vis[i, 0] = 0
    labels = np.zeros((len(tr.GAUSSIAN_KERNELS), len(joints)) + ds.output_hw)
    for li, k in enumerate(tr.GAUSSIAN_KERNELS):
        hm = np.zeros((len(joints),) + ds.output_hw, 'float32')
        for i in range(len(joints)):
            if vis[i, 0] < 1:
                continue
            hm[i, int(joints[i, 1] * ds.output_hw[0] / ds.input_hw[0]),
               int(joints[i, 0] * ds.output_hw[1] / ds.input_hw[1])] = 1
            hm[i] = cv2.GaussianBlur(hm[i], tuple(k), 0)
            hm[i] /= np.amax(hm[i]) / 255
        labels[li] = hm
    return x, torch.from_numpy(vis).float(), torch.from_numpy(labels).float()


def _rates(fns, n, rounds):
    """Interleave the variants in ``rounds`` chunks of ``n // rounds`` samples, so all see the same machine load.

    Returns per variant (best wall rate, median wall rate, rate per CPU second of this process). The CPU-time
    rate barely depends on other processes sharing the cores; the best wall chunk is the least disturbed one.
    """
    chunk = max(1, n // rounds)
    wall = {k: [] for k in fns}
    cpu = {k: 0.0 for k in fns}
    for name, fn in fns.items():
        fn(0)  # warm-up (imports, first decode)
    for r in range(rounds):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(r * chunk, (r + 1) * chunk):
                fn(i)
            wall[name].append(chunk / (time.perf_counter() - t0))
            cpu[name] += time.process_time() - c0
    return {k: (max(wall[k]), float(np.median(wall[k])), chunk * rounds / cpu[k]) for k in fns}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default='dataset/coco_subset')
    parser.add_argument('--samples', type=int, default=430, help='samples per pipeline (5 passes of 86)')
    parser.add_argument('--rounds', type=int, default=10, help='interleaved chunks per variant')
    parser.add_argument('--no-baseline', action='store_true')
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    exp = osp.join(os.getcwd(), 'bench_exp')
    fns = {}
    for name, make in (('megvii', megvii_config), ('simple_baselines', simple_baselines_config)):
        cfg = make(exp)
        cfg.DATASET.ROOT = osp.abspath(args.root)
        ds = build_dataset(cfg, 'train')
        ds.seed(0)
        fns[name] = (lambda d: lambda i: d[i % len(d)])(ds)
        if name == 'megvii' and not args.no_baseline:
            fns['original-style megvii (baseline)'] = (
                lambda d: lambda i: _baseline_sample(d, d.records[i % len(d)]))(ds)
    load0 = os.getloadavg()
    results = _rates(fns, args.samples, args.rounds)
    print('load average before / after (1 min): %.2f / %.2f on %d cores' % (load0[0], os.getloadavg()[0],
                                                                          os.cpu_count()))
    print('%-34s %12s %12s %12s' % ('train samples/s', 'best chunk', 'median', 'per CPU-s'))
    for name, (best, med, cpu) in results.items():
        print('%-34s %12.1f %12.1f %12.1f' % (name, best, med, cpu))
    base = results.get('original-style megvii (baseline)')
    if base:
        mv = results['megvii']
        print('megvii speed-up vs baseline: %.2fx best chunk, %.2fx median, %.2fx per CPU-s'
              % (mv[0] / base[0], mv[1] / base[1], mv[2] / base[2]))

if __name__ == '__main__':
    main()
