"""Decoder throughput on a batch of 32 COCO heatmaps (32 x 17 x 64 x 48), one thread.

    PYTHONPATH=$PWD python tools/bench_decode.py [--runs 30] [--json]

Baseline: the original per-image, per-joint Megvii ``get_results`` loop (``cvpack/decode/reference.py``,
the reference the tests check against). The batched ``decode_megvii`` must give identical outputs
(asserted here) and is timed against it; the other decoders are timed for comparison.
The decoder blurs (float64, exact) only a region around each peak and falls back to the full blur when
a bound cannot prove both maxima lie there (cvpack/decode/megvii.py).
Maps: a Gaussian peak (sigma 2, height 160-255) per joint at a random position, plus noise, float32.
"""
import argparse
import json
import os
import time

import cv2
import numpy as np
import torch

from cvpack.decode import decode_argmax, decode_dark, decode_megvii, decode_quarter
from cvpack.decode.reference import megvii_reference



def realistic_heatmaps(n=32, k=17, h=64, w=48, seed=0, peaks=1):
    """Peaked maps like a trained network's: Gaussian blob(s) + small noise (some negative values).

    ``peaks=2`` adds a second blob of equal height per map: the worst case, where every map takes
    the decoder's full-blur path.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    peak = rng.uniform(160, 255, (n, k, 1, 1))
    hm = rng.normal(0, 3.0, (n, k, h, w))
    for _ in range(peaks):
        cx = rng.uniform(0, w - 1, (n, k, 1, 1))
        cy = rng.uniform(0, h - 1, (n, k, 1, 1))
        hm += peak * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0 ** 2))
    return hm.astype(np.float32)


def median_ms(fn, runs):
    fn()                                             # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), 1e3 * float(np.min(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    reference = megvii_reference
    hm = realistic_heatmaps()

    ref_coords, ref_scores = reference(hm, kernel=5)
    coords, scores = decode_megvii(hm, kernel=5)
    assert np.array_equal(coords, ref_coords) and np.array_equal(scores, ref_scores), 'decode_megvii != original'

    results = {'shape': list(hm.shape)}
    # min is reported too: on a shared machine it is the least disturbed measure
    results['megvii_original_ms'], results['megvii_original_min_ms'] = median_ms(
        lambda: reference(hm, kernel=5), args.runs)
    results['megvii_batched_ms'], results['megvii_batched_min_ms'] = median_ms(
        lambda: decode_megvii(hm, kernel=5), args.runs)
    results['megvii_batched_torch_input_ms'], _ = median_ms(
        lambda: decode_megvii(torch.from_numpy(hm), kernel=5), args.runs)
    twin = realistic_heatmaps(peaks=2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(reference(twin), decode_megvii(twin))), 'two-peak maps differ'
    results['megvii_original_two_peaks_ms'], _ = median_ms(lambda: reference(twin, kernel=5), args.runs)
    results['megvii_batched_two_peaks_ms'], _ = median_ms(lambda: decode_megvii(twin, kernel=5), args.runs)
    results['speedup'] = results['megvii_original_ms'] / results['megvii_batched_ms']
    results['speedup_min'] = results['megvii_original_min_ms'] / results['megvii_batched_min_ms']
    for name, fn in (('quarter', decode_quarter), ('argmax', decode_argmax), ('dark', decode_dark)):
        results[name + '_ms'], _ = median_ms(lambda fn=fn: fn(hm), args.runs)
    if args.json:
        print(json.dumps(results))
        return
    print('decoding %s heatmaps, 1 thread, median of %d runs (outputs identical to the original: yes)'
          % ('x'.join(map(str, hm.shape)), args.runs))
    for key, value in results.items():
        if key.endswith('_ms'):
            print('  %-32s %8.2f ms' % (key[:-3], value))
    print('  speed-up of megvii over the original: %.1fx (median), %.1fx (min)'
          % (results['speedup'], results['speedup_min']))


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
