"""Training-sample throughput of the top-down pipelines (decode + augment + affine + targets + normalise).

One process, one thread (``cv2.setNumThreads(1)``, ``torch.set_num_threads(1)``), on the shipped COCO subset:

    PYTHONPATH=$PWD python tools/bench_data.py [--root dataset/coco_subset] [--samples 430] [--no-baseline]

The baseline (skip with ``--no-baseline``) is :func:`cvpack.data.reference.megvii_train_sample`, the loop-by-loop
re-statement of the original Megvii ``__getitem__`` (record deep copy, ``cv2.imread``, strided ``img[:, ::-1]``
flip, per-joint affine loop, one ``GaussianBlur`` per joint and kernel, ToTensor + Normalize in torch), timed on
the same records, interleaved with ours, so the speed-up is measured under the same machine load.
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
from cvpack.data import reference  # noqa: E402


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
        if not args.no_baseline:
            ref = reference.megvii_train_sample if name == 'megvii' else reference.simple_baselines_train_sample
            fns[name + ' original loop'] = (
                lambda d, f: lambda i: f(d, copy.deepcopy(d.records[i % len(d)]), d.rng))(ds, ref)
    load0 = os.getloadavg()
    results = _rates(fns, args.samples, args.rounds)
    print('load average before / after (1 min): %.2f / %.2f on %d cores' % (load0[0], os.getloadavg()[0],
                                                                          os.cpu_count()))
    print('%-34s %12s %12s %12s' % ('train samples/s', 'best chunk', 'median', 'per CPU-s'))
    for name, (best, med, cpu) in results.items():
        print('%-34s %12.1f %12.1f %12.1f' % (name, best, med, cpu))
    for name in ('megvii', 'simple_baselines'):
        base = results.get(name + ' original loop')
        if base:
            ours = results[name]
            print('%s speed-up vs its original loop: %.2fx best chunk, %.2fx median, %.2fx per CPU-s'
                  % (name, ours[0] / base[0], ours[1] / base[1], ours[2] / base[2]))


if __name__ == '__main__':
    main()
