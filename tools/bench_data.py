"""Training-sample throughput of the top-down pipelines (decode + augment + affine + targets + normalise).

One process, one thread (``cv2.setNumThreads(1)``, ``torch.set_num_threads(1)``), on the shipped COCO subset:

    PYTHONPATH=$PWD python tools/bench_data.py [--root dataset/coco_subset] [--samples 430] [--no-baseline]
        [--mmpose-python /path/to/mmpose-venv/bin/python] [--image-cache]

The baseline (skip with ``--no-baseline``) is :func:`cvpack.data.reference.megvii_train_sample`, the loop-by-loop
re-statement of the original Megvii ``__getitem__`` (record deep copy, ``cv2.imread``, strided ``img[:, ::-1]``
flip, per-joint affine loop, one ``GaussianBlur`` per joint and kernel, ToTensor + Normalize in torch), timed on
the same records, interleaved with ours, so the speed-up is measured under the same machine load.

With ``--mmpose-python`` (the python of a side environment holding mmpose 1.3.2; the project never imports
mmpose) mmpose's top-down train pipeline for the same targets (``LoadImage`` ... ``GenerateTarget`` with one
``MegviiHeatmap`` per kernel of the megvii config) runs on the same records in a child process,
tools/bench_mmpose_data_side.py, whose chunks are interleaved with ours: the child waits on its pipe while the
other pipelines run, so all variants see the same load and the per-CPU-second rates compare directly.
A "jpeg decode only" row times the decode every variant does, the floor of any full-image pipeline.
``--image-cache`` adds ours with ``DATASET.IMAGE_CACHE`` (cvpack/data/image_cache.py): the images decoded once
into a temporary folder before the timing (that first pass is timed and printed apart), then memory-mapped.

``--test-exp EXP_DIR [--workers N] [--threads T]`` instead times test.py's work on the val people of ``--root``
(ground-truth boxes): the val loader alone, then the exp's network with its flip test and decode (docs/SPEED.md).
"""
import argparse
import copy
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from cvpack.config.megvii import megvii_config  # noqa: E402
from cvpack.config.simple_baselines import simple_baselines_config  # noqa: E402
from cvpack.data import build_dataset  # noqa: E402
from cvpack.data import reference  # noqa: E402
from cvpack.data.io import read_image  # noqa: E402


def _local(fn):
    """Chunk runner of an in-process per-sample function: (start, stop) -> (wall s, CPU s of this process)."""
    def run(start, stop):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(start, stop):
            fn(i)
        return time.perf_counter() - t0, time.process_time() - c0
    return run


def _folder_mb(folder):
    return sum(osp.getsize(osp.join(d, f)) for d, _, files in os.walk(folder) for f in files) / 2 ** 20


def _rates(runners, n, rounds):
    """Interleave the variants in ``rounds`` chunks of ``n // rounds`` samples, so all see the same machine load.

    ``runners``: name -> chunk runner ``(start, stop) -> (wall s, CPU s)``. Returns per variant (best wall rate,
    median wall rate, rate per CPU second of the process that ran it). The CPU-time rate barely depends on other
    processes sharing the cores; the best wall chunk is the least disturbed one.
    """
    chunk = max(1, n // rounds)
    wall = {k: [] for k in runners}
    cpu = {k: 0.0 for k in runners}
    for run in runners.values():
        run(0, 1)  # warm-up (imports, first decode)
    for r in range(rounds):
        for name, run in runners.items():
            dt, dc = run(r * chunk, (r + 1) * chunk)
            wall[name].append(chunk / dt)
            cpu[name] += dc
    return {k: (max(wall[k]), float(np.median(wall[k])), chunk * rounds / cpu[k]) for k in runners}


def _mmpose_records(ds):
    """The dataset's training records as mmpose's CocoDataset would hand them to its pipeline (bbox clipped to
    the image as xyxy, visibility min(v, 1)), for bench_mmpose_data_side.py (which adds mmpose's own COCO
    meta-information: flip indices, body parts)."""
    recs = []
    for r in ds.records:
        x, y, w, h = (float(v) for v in r['bbox'][:4])
        iw, ih = r['width'] - 1, r['height'] - 1
        recs.append(dict(img_path=r['image_path'], keypoints=r['joints'][:, :2].tolist(),
                         visible=np.minimum(r['joints'][:, 2], 1).tolist(),
                         bbox=[min(max(x, 0), iw), min(max(y, 0), ih), min(max(x + w, 0), iw),
                               min(max(y + h, 0), ih)]))
    return dict(records=recs)


class MMPoseSide:
    """mmpose's pipeline in its own environment (tools/bench_mmpose_data_side.py), driven chunk by chunk."""

    def __init__(self, python, ds, kernels, side=None):
        self.tmp = tempfile.NamedTemporaryFile('w', suffix='.json', delete=False)
        json.dump(_mmpose_records(ds), self.tmp)
        self.tmp.close()
        side = side or osp.join(osp.dirname(osp.abspath(__file__)), 'bench_mmpose_data_side.py')
        self.proc = subprocess.Popen([python, side, self.tmp.name, '--kernels'] + [str(k) for k in kernels],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=''))
        try:
            self.version = self._line().split()[-1]   # 'ready mmpose X.Y.Z'
        except RuntimeError:
            os.unlink(self.tmp.name)
            raise

    def _line(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError('the mmpose side process (%s) stopped; its error is above' % self.proc.args[1])
        return line

    def __call__(self, start, stop):
        self.proc.stdin.write('%d %d\n' % (start, stop))
        self.proc.stdin.flush()
        t = json.loads(self._line())
        return t['wall'], t['cpu']

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        os.unlink(self.tmp.name)


def _report(results, mmpose_version):
    print('%-34s %12s %12s %12s' % ('train samples/s', 'best chunk', 'median', 'per CPU-s'))
    for name, (best, med, cpu) in results.items():
        print('%-34s %12.1f %12.1f %12.1f' % (name, best, med, cpu))
    for name in ('megvii', 'simple_baselines'):
        base = results.get(name + ' original loop')
        if base:
            ours = results[name]
            print('%s speed-up vs its original loop: %.2fx best chunk, %.2fx median, %.2fx per CPU-s'
                  % (name, ours[0] / base[0], ours[1] / base[1], ours[2] / base[2]))
    floor = results.get('jpeg decode only (floor)')
    if floor and 'megvii original loop' in results:
        orig, ours = results['megvii original loop'][2], results['megvii'][2]
        print('decode floor: no pipeline decoding the whole JPEG can beat the megvii original loop by more than '
              '%.2fx per CPU-s (ours: %.2fx)' % (floor[2] / orig, ours / orig))
        # CPU ms per sample beyond the decode (each variant decodes the same file once; the difference of rates)
        after = [1e3 / r - 1e3 / floor[2] for r in (ours, orig)]
        print('after the decode: ours %.2f ms, original loop %.2f ms of CPU a sample (%.1fx)'
              % (after[0], after[1], after[1] / after[0]))
    cached = results.get('megvii + image cache')
    if cached and 'megvii original loop' in results:
        print('megvii + image cache vs its original loop: %.2fx per CPU-s (no decode after the first pass)'
              % (cached[2] / results['megvii original loop'][2]))
    peer = results.get('megvii mmpose')
    if peer:
        ours = results['megvii']
        print('megvii vs mmpose %s top-down pipeline: %.2fx best chunk, %.2fx median, %.2fx per CPU-s'
              % (mmpose_version, ours[0] / peer[0], ours[1] / peer[1], ours[2] / peer[2]))


def test_split(exp_dir, root, threads, workers):
    """test.py's work on the val people of ``root`` (``TEST.USE_GT_BBOX True``): the val loader (read, crop,
    normalise, collate with ``workers`` DataLoader workers) timed alone, then the predictor (network with the
    exp's flip test, decode) on the collated batches, with ``threads`` torch threads and random weights (the
    time does not depend on their values). Prints both and the data share."""
    from cvpack.data import collate
    from cvpack.exp import load_exp
    from cvpack.inference import build_predictor
    from cvpack.inference.runner import predict_batches
    torch.set_num_threads(threads)
    cfg, model = load_exp(exp_dir, ['MODEL.PRETRAINED', '', 'TEST.USE_GT_BBOX', True,
                                    'DATASET.ROOT', osp.abspath(root)])
    if cfg.MODEL.get('CHANNELS_LAST', False):   # as test.py (cvpack.engine.utils.prepare_model)
        model = model.to(memory_format=torch.channels_last)
    model = model.eval()
    ds = build_dataset(cfg, 'val')
    loader = torch.utils.data.DataLoader(ds, batch_size=int(cfg.TEST.IMS_PER_GPU), collate_fn=collate,
                                         num_workers=workers)
    t0, c0 = time.perf_counter(), time.process_time()
    batches = list(loader)
    data, data_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    predict_batches(model, batches, build_predictor(cfg), cfg, torch.device('cpu'))
    net = time.perf_counter() - t0
    print('test.py work on %d val people of %s (%s, batch %d, flip test %s, %d threads, %d loader workers):'
          % (len(ds), root, osp.basename(osp.normpath(exp_dir)), int(cfg.TEST.IMS_PER_GPU), cfg.TEST.FLIP,
             threads, workers))
    print('  data (read + crop + normalise + collate): %.2f s wall (%.2f s CPU of this process), %.1f ms a person'
          % (data, data_cpu, 1e3 * data / len(ds)))
    print('  network + heatmap decode: %.2f s, %.1f ms a person; data share %.1f %%'
          % (net, 1e3 * net / len(ds), 100 * data / (data + net)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default='dataset/coco_subset')
    parser.add_argument('--samples', type=int, default=430, help='samples per pipeline (5 passes of 86)')
    parser.add_argument('--rounds', type=int, default=10, help='interleaved chunks per variant')
    parser.add_argument('--no-baseline', action='store_true')
    parser.add_argument('--pipelines', nargs='+', default=['megvii', 'simple_baselines'],
                        choices=['megvii', 'simple_baselines'])
    parser.add_argument('--mmpose-python', help='python of a side environment with mmpose 1.3.2: also time its '
                        'top-down pipeline for the megvii targets in this run (tools/bench_mmpose_data_side.py)')
    parser.add_argument('--image-cache', action='store_true', help='also time ours with DATASET.IMAGE_CACHE '
                        '(decoded images memory-mapped from a temporary folder, filled before the timing)')
    parser.add_argument('--test-exp', metavar='EXP_DIR', help="instead: time test.py's val loader against its "
                        'network on the val people of --root (e.g. projects/RSN/exps/RSN18.coco)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads of the --test-exp network')
    parser.add_argument('--workers', type=int, default=0, help='DataLoader workers of the --test-exp loader')
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.test_exp:
        return test_split(args.test_exp, args.root, args.threads, args.workers)
    torch.set_num_threads(1)
    exp = osp.join(os.getcwd(), 'bench_exp')
    runners, side, cache_dir = {}, None, None
    makers = {'megvii': megvii_config, 'simple_baselines': simple_baselines_config}
    for name in args.pipelines:
        cfg = makers[name](exp)
        cfg.DATASET.ROOT = osp.abspath(args.root)
        ds = build_dataset(cfg, 'train')
        ds.seed(0)
        runners[name] = _local((lambda d: lambda i: d[i % len(d)])(ds))
        if not args.no_baseline:
            ref = reference.megvii_train_sample if name == 'megvii' else reference.simple_baselines_train_sample
            runners[name + ' original loop'] = _local(
                (lambda d, f: lambda i: f(d, copy.deepcopy(d.records[i % len(d)]), d.rng))(ds, ref))
        if name == 'megvii' and args.image_cache:
            cached_cfg = makers[name](exp)
            cached_cfg.DATASET.ROOT = cfg.DATASET.ROOT
            cached_cfg.DATASET.IMAGE_CACHE = cache_dir = tempfile.mkdtemp(prefix='cvpack-image-cache-')
            cached = build_dataset(cached_cfg, 'train')
            cached.seed(0)
            cold = _local(lambda i, d=cached: d.read_record_image(d.records[i], i))(0, len(cached))
            n_img = len({r['image_path'] for r in cached.records})
            print('decoded-image cache (DATASET.IMAGE_CACHE): first pass over the %d training people of %d images '
                  '%.2f ms of CPU an image (decode + write), %.1f MB on disk'
                  % (len(cached), n_img, 1e3 * cold[1] / n_img, _folder_mb(cache_dir)))
            runners[name + ' + image cache'] = _local((lambda d: lambda i: d[i % len(d)])(cached))
        if name == 'megvii':
            # the floor of every variant here: each decodes the whole JPEG once per sample (1 thread)
            runners['jpeg decode only (floor)'] = _local(
                (lambda d: lambda i: read_image(d.records[i % len(d)]['image_path']))(ds))
        if name == 'megvii' and args.mmpose_python:
            kernels = [int(np.resize(k, 2)[0]) for k in cfg.DATASET.TRAIN.GAUSSIAN_KERNELS]
            side = runners['megvii mmpose'] = MMPoseSide(args.mmpose_python, ds, kernels)
            print('mmpose %s pipeline, MegviiHeatmap kernels %s' % (side.version, kernels))
    load0 = os.getloadavg()
    try:
        results = _rates(runners, args.samples, args.rounds)
    finally:
        if side is not None:
            side.close()
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    print('load average before / after (1 min): %.2f / %.2f on %d cores' % (load0[0], os.getloadavg()[0],
                                                                          os.cpu_count()))
    _report(results, side.version if side else None)


if __name__ == '__main__':
    main()
