"""Time RSN-18, 4xRSN-18 and MSPN-2stg on CPU: one training step and batched inference, per precision mode.

    PYTHONPATH=$PWD python tools/bench_models.py [--models RSN18 4xRSN18 MSPN2stg] [--runs 3] [--threads 2]

Training step = forward with loss, backward, Adam step (lr 5e-4, wd 1e-5), batch 8 at 256x192, model.train().
Inference = model.eval(), no_grad, batch 8, one forward (no flip). Modes: fp32 (default memory format),
fp32 channels-last, CPU bf16 autocast (channels-last); inference also with BN folded into the convs.
The fp32 loss is checked against the original per-sample loss (:func:`reference_loss_per_sample`) to 1e-4.
Originals measured on this machine (spec §8, medians): RSN-18 1.52 s / 443 ms, 4xRSN-18 5.61 s / 1.51 s,
MSPN-2stg 4.41 s / 1.06 s. The CPU is shared: report medians and treat them as +-25 %.
"""
import argparse
import contextlib
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cvpack.modeling.layers import fuse_conv_bn  # noqa: E402
from cvpack.modeling.losses.megvii import megvii_loss, reference_loss_per_sample  # noqa: E402
from cvpack.tools.complexity import load_exp  # noqa: E402

EXPS = {'RSN18': 'projects/RSN/exps/RSN18.coco', '4xRSN18': 'projects/RSN/exps/4XRSN18.coco',
        'MSPN2stg': 'projects/MSPN/exps/mspn.2xstg.coco'}
ORIGINAL = {'RSN18': (1.52, 0.443), '4xRSN18': (5.61, 1.51), 'MSPN2stg': (4.41, 1.06)}
# 'orig-like': our model with the original's per-sample Python loss loop, fp32, default format: the original's
# compute path, timed in the same run so speed-ups are not confounded by the shared machine's load.
MODES = {'orig-like': (False, False), 'fp32': (False, False), 'fp32-cl': (True, False), 'bf16-cl': (True, True)}


def _median_time(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _batch(cfg, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    k, (h, w) = cfg.DATASET.KEYPOINT.NUM, cfg.OUTPUT_SHAPE
    images = torch.randn(n, 3, *cfg.INPUT_SHAPE, generator=g)
    targets = {'target': torch.rand(n, 5, k, h, w, generator=g) * 255,
               'target_weight': torch.randint(0, 3, (n, k), generator=g).float()}
    return images, targets


def check_loss(model, cfg, images, targets):
    """fp32 batched loss vs the original per-sample loop on the same forward outputs."""
    model.train()
    with torch.no_grad():
        outputs = model.forward_stages(images)
        ours = sum(megvii_loss(outputs, targets['target_weight'], targets['target'], **model.loss_kwargs).values())
        ref = reference_loss_per_sample(outputs, targets['target_weight'][..., None], targets['target'])
    rel = abs(ours.item() - ref.item()) / abs(ref.item())
    return ours.item(), ref.item(), rel


def bench_model(name, runs, modes=tuple(MODES)):
    cfg, model = load_exp(EXPS[name], ['MODEL.PRETRAINED', ''])
    images, targets = _batch(cfg)
    loss, ref, rel = check_loss(model, cfg, images, targets)
    print('%s: fp32 loss %.3f vs per-sample original %.3f (rel. diff %.1e) %s'
          % (name, loss, ref, rel, 'OK' if rel < 1e-4 else 'MISMATCH'), flush=True)
    rows = []
    for mode in modes:
        cl, bf16 = MODES[mode]
        fmt = torch.channels_last if cl else torch.contiguous_format
        m = model.to(memory_format=fmt)
        x = images.contiguous(memory_format=fmt)
        opt = torch.optim.Adam(m.parameters(), lr=5e-4, weight_decay=1e-5)
        amp = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

        def step():
            m.train()
            with amp():
                if mode == 'orig-like':
                    total = reference_loss_per_sample(m.forward_stages(x), targets['target_weight'][..., None],
                                                      targets['target'])
                else:
                    total = sum(m(x, targets).values())
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()

        def infer(net=m):
            net.eval()
            with torch.no_grad(), amp():
                net(x)
        rows.append((mode, _median_time(step, runs), _median_time(infer, runs)))
        print('  %-8s train %.3f s  infer %.3f s' % rows[-1], flush=True)
        if mode != 'orig-like':
            fused = fuse_conv_bn(m.eval()).to(memory_format=fmt)
            t = _median_time(lambda: infer(fused), runs)
            rows.append((mode + '+fold', None, t))
            print('  %-8s infer %.3f s (BN folded)' % (mode + '+fold', t), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=list(EXPS), choices=list(EXPS))
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    table = {name: bench_model(name, args.runs, args.modes) for name in args.models}
    print('\n| model | mode | train step (s) | speed-up vs orig-like | inference (s) | speed-up vs orig-like |')
    print('|---|---|---|---|---|---|')
    for name, rows in table.items():
        orig_train, orig_infer = ORIGINAL[name]
        print('| %s | original (spec §8, unloaded machine) | %.2f | - | %.3f | - |' % (name, orig_train, orig_infer))
        base = {r[0]: r for r in rows}.get('orig-like')
        for mode, tr, inf in rows:
            tr_s = '%.2f | %s' % (tr, '%.2fx' % (base[1] / tr) if base else '-') if tr else '- | -'
            print('| %s | %s | %s | %.3f | %s |' % (name, mode, tr_s, inf, '%.2fx' % (base[2] / inf) if base else '-'))


if __name__ == '__main__':
    main()
