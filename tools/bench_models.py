"""Time RSN-18, 4xRSN-18 and MSPN-2stg on CPU: one training step and batched inference, per precision mode.

    PYTHONPATH=$PWD python tools/bench_models.py [--models RSN18 4xRSN18 MSPN2stg] [--runs 3] [--threads 2]
                                                 [--compile] [--onnx] [--mmpose-python PY]

Training step = forward with loss, backward, Adam step (lr 5e-4, wd 1e-5; fused kernel except in 'orig-like'),
batch 8 at 256x192, model.train(). Inference = model.eval(), no_grad, batch 8, one forward (no flip).
Modes: fp32 (default memory format), fp32 channels-last, CPU bf16 autocast (channels-last); inference also
with BN folded into the convs and, with --compile, through TEST.COMPILE (torch.compile with freezing;
30-90 s of compiling per model and precision).
The fp32 loss is checked against the original per-sample loss (:func:`reference_loss_per_sample`) to 1e-4.
Originals measured on this machine (docs/reference/rsn_mspn.md §8, medians): RSN-18 1.52 s / 443 ms, 4xRSN-18 5.61 s /
1.51 s, MSPN-2stg 4.41 s / 1.06 s. The CPU is shared: report medians and treat them as +-25 %.

The summary also prints each goal of issues #4/#5 (2.5x the original in fp32, 5x in bf16) and a floor: the
time the model's multiply-accumulates alone take at this machine's measured matrix-multiply peak (a 2048^3
GEMM in the same run; a training step is counted as 3x the forward MACs). A goal below its floor cannot be
met by any implementation of the same network in that precision.
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
from cvpack.inference.compile import compile_for_inference  # noqa: E402
from cvpack.modeling.losses.megvii import megvii_loss  # noqa: E402
from cvpack.modeling.losses.reference import reference_loss_per_sample  # noqa: E402
from cvpack.tools.complexity import count_macs, load_exp  # noqa: E402

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


def gemm_peak_gmacs(dtype, n=2048, runs=7):
    """Multiply-accumulates per second (1e9) of the fastest of ``runs`` n^3 matrix products: the practical
    compute peak (a shared machine only ever slows a run down, so the fastest is the best estimate)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return n ** 3 / min(times) / 1e9


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


def bench_onnxruntime(model, x, runs, threads):
    """Median seconds of one onnxruntime forward of ``x`` through ``model`` exported with BN folded
    (cvpack.tools.export, fixed batch); None when onnx / onnxruntime are not installed."""
    import tempfile
    try:
        from cvpack.inference.onnx import OnnxHeatmapModel
        from cvpack.tools.export import export_onnx
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model.eval(), os.path.join(tmp, 'm.onnx'), x.shape[-2:], batch=x.shape[0])
            net = OnnxHeatmapModel(path, threads=threads)
            return _median_time(lambda: net(x), runs)
    except ImportError as e:
        print('  onnxruntime skipped: %s' % e, flush=True)
        return None


def bench_model(name, runs, modes=tuple(MODES), compiled=False, onnx=False):
    """Rows (mode, train step s or None, inference s) for one model; also returns its forward GMACs per batch."""
    cfg, model = load_exp(EXPS[name], ['MODEL.PRETRAINED', ''])
    images, targets = _batch(cfg)
    gmacs = count_macs(model.eval(), images[:1]) * images.shape[0] / 1e9
    loss, ref, rel = check_loss(model, cfg, images, targets)
    print('%s: fp32 loss %.3f vs per-sample original %.3f (rel. diff %.1e) %s'
          % (name, loss, ref, rel, 'OK' if rel < 1e-4 else 'MISMATCH'), flush=True)
    rows = []
    for mode in modes:
        cl, bf16 = MODES[mode]
        fmt = torch.channels_last if cl else torch.contiguous_format
        m = model.to(memory_format=fmt)
        x = images.contiguous(memory_format=fmt)
        opt = torch.optim.Adam(m.parameters(), lr=5e-4, weight_decay=1e-5, fused=mode != 'orig-like' or None)
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
        if onnx and mode == 'fp32-cl':
            t = bench_onnxruntime(m, images, runs, torch.get_num_threads())
            if t is not None:
                rows.append(('fp32+onnxruntime', None, t))
                print('  %-8s infer %.3f s (onnxruntime, BN folded)' % ('fp32+onnxruntime', t), flush=True)
        if compiled and cl:
            with torch.no_grad(), amp():
                net = compile_for_inference(m)
                net(x)              # compiles
            t = _median_time(lambda: infer(net), runs)
            rows.append((mode + '+compile', None, t))
            print('  %-8s infer %.3f s (TEST.COMPILE)' % (mode + '+compile', t), flush=True)
            torch._dynamo.reset()
    return rows, gmacs


def _speedup(ref, t):
    return '%.2fx' % (ref / t) if ref and t else '-'


def print_table(table):
    """Markdown table: each mode's times and speed-ups against the spec's original and the same-run orig-like."""
    print('\n| model | mode | train step (s) | vs original | vs orig-like | inference (s) | vs original | vs orig-like |')
    print('|---|---|---|---|---|---|---|---|')
    for name, (rows, _) in table.items():
        orig_train, orig_infer = ORIGINAL[name]
        print('| %s | original (docs/reference/rsn_mspn.md §8) | %.2f | - | - | %.3f | - | - |' % (name, orig_train, orig_infer))
        base = {r[0]: r for r in rows}.get('orig-like', (None, None, None))
        for mode, tr, inf in rows:
            tr_s = '%.2f' % tr if tr else '-'
            print('| %s | %s | %s | %s | %s | %.3f | %s | %s |' % (
                name, mode, tr_s, _speedup(orig_train, tr), _speedup(base[1], tr),
                inf, _speedup(orig_infer, inf), _speedup(base[2], inf)))


def print_goals(table, peaks):
    """Each goal (original / 2.5 in fp32, / 5 in bf16), the best time measured, and the MAC-bound floor."""
    print('\nGEMM peak on %d threads: fp32 %.0f, bf16 %.0f GMAC/s' % (torch.get_num_threads(), peaks['fp32'],
                                                                   peaks['bf16']))
    print('\n| model | what | goal (s) | best measured (s) | met | floor at GEMM peak (s) |')
    print('|---|---|---|---|---|---|')
    for name, (rows, gmacs) in table.items():
        for col, what, passes in ((1, 'train step', 3), (2, 'inference', 1)):
            for prec, factor in (('fp32', 2.5), ('bf16', 5.0)):
                times = [r[col] for r in rows if r[col] and r[0].startswith(prec) and r[0] != 'orig-like']
                if not times:
                    continue
                goal, best = ORIGINAL[name][col - 1] / factor, min(times)
                print('| %s | %s %s | %.3f | %.3f | %s | %.3f |' % (name, what, prec, goal, best,
                      'yes' if best <= goal else 'no', gmacs * passes / peaks[prec]))


def run_mmpose(python, models, runs, threads, side=None):
    """mmpose 1.3.2's inference times {model: seconds}, run in its own environment (``python``) by
    tools/bench_mmpose_side.py in the same benchmark run (same machine, same moment)."""
    import json
    import subprocess
    side = side or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bench_mmpose_side.py')
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop('PYTHONPATH', None)     # the side environment must not see this checkout's packages
    res = subprocess.run([python, side, '--models'] + list(models) + ['--runs', str(runs), '--threads', str(threads)],
                         capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError('%s %s failed:\n%s' % (python, side, res.stderr[-2000:]))
    return {k: v['infer'] for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}


def print_peer(table, mmpose, peaks):
    """Inference against mmpose's eager model (goal: 2x) and the fp32 MAC floor (goal: within 1.3x of it)."""
    print('\n| model | mmpose 1.3.2 eager (s) | ours, fastest fp32 (s) | path | vs mmpose | floor (s) | vs floor |')
    print('|---|---|---|---|---|---|---|')
    for name, (rows, gmacs) in table.items():
        fp32 = [(r[2], r[0]) for r in rows if r[0].startswith('fp32') and r[2]]
        if name not in mmpose or not fp32:
            continue
        best, path = min(fp32)
        floor = gmacs / peaks['fp32']
        print('| %s | %.3f | %.3f | %s | %.2fx | %.3f | %.2fx |' % (name, mmpose[name], best, path,
                                                                  mmpose[name] / best, floor, best / floor))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=list(EXPS), choices=list(EXPS))
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES))
    parser.add_argument('--compile', action='store_true', help='also time TEST.COMPILE inference')
    parser.add_argument('--onnx', action='store_true',
                        help='also time onnxruntime inference of the exported model (pip install .[export])')
    parser.add_argument('--mmpose-python', help="python of a side environment with mmpose 1.3.2: also time its "
                        "eager inference in this run (tools/bench_mmpose_side.py)")
    parser.add_argument('--mmpose-times', nargs='+', metavar='MODEL=SECONDS', default=[],
                        help='or give mmpose inference times measured elsewhere')
    args = parser.parse_args(argv)
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # see docs/SPEED.md "Quick start": shared 2-core machines
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    caps = torch.cpu.get_capabilities()
    native_bf16 = bool(caps.get('amx_bf16') or caps.get('avx512_bf16') or caps.get('bf16'))
    # Without native bf16 the 2048^3 bf16 product is emulated and takes minutes: no bf16 peak (nor floor) then.
    peaks = {'fp32': gemm_peak_gmacs(torch.float32),
             'bf16': gemm_peak_gmacs(torch.bfloat16) if native_bf16 else float('nan')}
    print('CPU: %s, %s; fp32 GEMM peak %.0f GMAC/s on %d threads' % (caps.get('cpu_name', '?'),
          torch.backends.cpu.get_cpu_capability(), peaks['fp32'], args.threads), flush=True)
    table = {name: bench_model(name, args.runs, args.modes, args.compile, args.onnx) for name in args.models}
    print_table(table)
    print_goals(table, peaks)
    mmpose = {k: float(v) for k, v in (t.split('=', 1) for t in args.mmpose_times)}
    if args.mmpose_python:
        mmpose.update(run_mmpose(args.mmpose_python, args.models, args.runs, args.threads))
    if mmpose:
        print_peer(table, mmpose, peaks)


if __name__ == '__main__':
    main()
