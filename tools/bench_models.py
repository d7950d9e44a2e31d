"""Time RSN-18, 4xRSN-18 and MSPN-2stg on CPU: one training step and batched inference, per path, interleaved.

    PYTHONPATH=$PWD python tools/bench_models.py [--models RSN18 4xRSN18 MSPN2stg] [--runs 3] [--train-runs N]
        [--threads 2] [--modes orig-like fp32-cl ...] [--compile] [--onnx] [--mmpose-python PY]

Training step = forward with loss, backward, Adam step (lr 5e-4, wd 1e-5; fused kernel except in 'orig-like'),
batch 8 at 256x192, model.train(). Inference = model.eval(), no_grad, batch 8, one forward (no flip).
Modes: fp32 (default memory format), fp32 channels-last, CPU bf16 autocast (channels-last); inference also
with BN folded into the convs, with --compile through TEST.COMPILE (torch.compile with freezing; 30-90 s of
compiling per model and precision, outside the timings) and with --onnx through onnxruntime (the exported,
BN-folded graph, cvpack.inference.onnx). 'orig-like' is our network with the original's per-sample Python
loss loop, fp32, default memory format: the original's compute path.

All paths of one model (and mmpose 1.3.2's eager model with --mmpose-python: a side process in its own
environment, tools/bench_mmpose_side.py --serve) run in interleaved rounds, one call of each per round, so a
shared machine's load falls on all alike; each is reported as the median and minimum wall time, the median
CPU seconds (all threads) per call and the load average at start / end.

The fp32 loss is checked against the original per-sample loss (:func:`reference_loss_per_sample`) to 1e-4.
The floor is the time the model's multiply-accumulates alone take at this machine's measured compute peak
(the fastest of a 2048^3 GEMM and a 3x3 convolution, at the start and after each model; a training step
is counted as 3x the forward MACs; the MACs are the network's as published, every head counted). A goal
below its floor cannot be met by any implementation that computes the whole network in that precision. The
eval forward computes less for the same heatmaps (MultiStageNet.forward: the heads it does not return are
skipped, up_conv runs before the resize); the "eval floor" divides those MACs, and the path 'original eval
form, fp32-cl+fold' times the eval forward without these shortcuts in the same rounds. Printed goals: issue
#17 part 3 (fastest fp32 inference >= 2x mmpose, <= 1.3x the floor) and issues #4/#5 (2.5x / 5x the
original as measured on the Xeon, docs/reference/rsn_mspn.md §8: RSN-18 1.52 s / 443 ms, 4xRSN-18 5.61 s /
1.51 s, MSPN-2stg 4.41 s / 1.06 s).
"""
import argparse
import contextlib
import copy
import os
import statistics
import sys
import time

# Idle OpenMP threads sleep instead of spinning, as tools/quickstart.py sets for its runs (docs/SPEED.md, "Quick
# start": shared 2-core machines). OpenMP reads this when torch loads, so it must come before the import; the
# mmpose side process inherits it, so both run under the same policy.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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


def gemm_peak_gmacs(dtype, n=2048, runs=7):
    """Multiply-accumulates per second (1e9) of the fastest of ``runs`` n^3 matrix products (MKL) and of
    ``runs`` 3x3 convolutions of 64 channels, channels-last, batch 8 at 64x48 (oneDNN): the practical compute
    peak. A shared machine only ever slows a run down, so the fastest is the best estimate. Both kernels,
    because MKL's GEMM does not reach the peak on every CPU: on an AMD EPYC with AVX-512 (Zen 5) it ran
    26 GMAC/s on one thread against 83 for oneDNN's convolution (docs/SPEED.md)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    x = torch.randn(8, 64, 64, 48).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    best = 0.0
    with torch.no_grad():
        for fn, macs in ((lambda: a @ b, n ** 3), (lambda: F.conv2d(x, w, padding=1), x.numel() * 64 * 9)):
            for _ in range(2):
                fn()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            best = max(best, macs / min(times) / 1e9)
    return best


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


def _load():
    """The 1-minute load average (the machine is shared: every figure is printed with it)."""
    try:
        with open('/proc/loadavg') as f:
            return float(f.read().split()[0])
    except OSError:
        return float('nan')


def _timed(fn):
    """Run ``fn`` once; (wall seconds, process CPU seconds of all threads). ``fn`` returns None, or times
    itself (a side process) and returns that (wall, cpu) tuple instead."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out if isinstance(out, tuple) else (time.perf_counter() - wall, time.process_time() - cpu)


def interleave(variants, runs, warmup=1):
    """Time ``variants`` {label: fn} in rounds, each round calling every variant once (the start rotating), so
    a shared machine's load falls on all alike. Returns {label: {'median', 'min', 'cpu', 'load'}} (wall
    median and minimum, median CPU seconds, load average at start / end)."""
    labels, load0 = list(variants), _load()
    for label in labels:
        for _ in range(warmup):
            variants[label]()
    times = {label: [] for label in labels}
    for r in range(runs):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            times[label].append(_timed(variants[label]))
    load = '%.1f/%.1f' % (load0, _load())
    return {label: {'median': statistics.median(t[0] for t in ts), 'min': min(t[0] for t in ts),
                    'cpu': statistics.median(t[1] for t in ts), 'load': load} for label, ts in times.items()}


class MmposeSide:
    """mmpose 1.3.2 in its own environment (``python``), serving one timed inference or training step per
    request (tools/bench_mmpose_side.py --serve), so its runs interleave with ours."""

    def __init__(self, python, threads, side=None):
        import subprocess
        side = side or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bench_mmpose_side.py')
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        env.pop('PYTHONPATH', None)     # the side environment must not see this checkout's packages
        self.proc = subprocess.Popen([python, side, '--serve', '--threads', str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        if self.proc.stdout.readline().strip() != 'ready':
            raise RuntimeError('%s %s --serve did not start (see its error above)' % (python, side))

    def __call__(self, what, name):
        """(wall, cpu) seconds of one mmpose ``what`` ('infer' or 'train') of ``name``, timed in its process."""
        import json
        self.proc.stdin.write('%s %s\n' % (what, name))
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError('the mmpose side process exited (see its error above)')
        out = json.loads(line)
        return out['wall'], out['cpu']

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def onnxruntime_model(model, x, threads, spin=False):
    """``model`` exported with BN folded (cvpack.tools.export, fixed batch) in an onnxruntime session
    (:class:`cvpack.inference.onnx.OnnxHeatmapModel`); None when onnx / onnxruntime are not installed."""
    import tempfile
    try:
        from cvpack.inference.onnx import OnnxHeatmapModel
        from cvpack.tools.export import export_onnx
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model.eval(), os.path.join(tmp, 'm.onnx'), x.shape[-2:], batch=x.shape[0])
            return OnnxHeatmapModel(path, threads=threads, spin=spin)
    except ImportError as e:
        print('  onnxruntime skipped: %s' % e, flush=True)
        return None


def inference_variants(model, images, modes, compiled=False, onnx=False, onnx_spin=False):
    """{label: fn}: one eval forward of ``images`` per call, on copies of ``model``: per mode eager,
    BN folded (not 'orig-like') and, with ``compiled``, TEST.COMPILE (channels-last modes); onnxruntime with
    ``onnx``. Compiling (the first call of each compiled copy) happens here, outside the timings."""
    variants = {}
    for mode in modes:
        cl, bf16 = MODES[mode]
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = images.contiguous(memory_format=fmt)
        amp = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        nets = {mode: copy.deepcopy(model).eval().to(memory_format=fmt)}
        if mode == 'orig-like':   # the original's compute path: every head, up_conv after the resize
            nets[mode].original_eval = True
        else:
            nets[mode + '+fold'] = fuse_conv_bn(model).to(memory_format=fmt)   # (an eval-mode copy)
        if mode == 'fp32-cl' and hasattr(model, 'original_eval'):
            # the eval forward's shortcuts (MultiStageNet.forward) measured in the same rounds: without them
            net = nets['original eval form, fp32-cl+fold'] = fuse_conv_bn(model).to(memory_format=fmt)
            net.original_eval = True
        if compiled and cl:
            t = time.perf_counter()
            with torch.no_grad(), amp():
                nets[mode + '+compile'] = compile_for_inference(copy.deepcopy(model).to(memory_format=fmt))
                nets[mode + '+compile'](x)
            print('  %s+compile: compiled in %.0f s' % (mode, time.perf_counter() - t), flush=True)
        for label, net in nets.items():
            def infer(net=net, x=x, amp=amp):
                with torch.no_grad(), amp():
                    net(x)
            variants[label] = infer
    for spin in ([False, True] if onnx_spin else [False]) if onnx else []:
        net = onnxruntime_model(model, images, torch.get_num_threads(), spin)
        if net is not None:
            def run(net=net):
                net(images)
            variants['fp32+onnxruntime' + (' (spinning)' if spin else '')] = run
    return variants


def train_variants(model, images, targets, modes):
    """{label: fn}: one training step (forward with loss, backward, Adam) per call, one model copy per mode."""
    variants = {}
    for mode in modes:
        cl, bf16 = MODES[mode]
        fmt = torch.channels_last if cl else torch.contiguous_format
        m = copy.deepcopy(model).train().to(memory_format=fmt)
        x = images.contiguous(memory_format=fmt)
        opt = torch.optim.Adam(m.parameters(), lr=5e-4, weight_decay=1e-5, fused=mode != 'orig-like' or None)
        amp = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

        def step(m=m, x=x, opt=opt, amp=amp, mode=mode):
            with amp():
                if mode == 'orig-like':
                    total = reference_loss_per_sample(m.forward_stages(x), targets['target_weight'][..., None],
                                                      targets['target'])
                else:
                    total = sum(m(x, targets).values())
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        variants[mode] = step
    return variants


def bench_model(name, runs, modes=tuple(MODES), compiled=False, onnx=False, mmpose=None, train_runs=None,
                onnx_spin=False):
    """Inference and training-step timings of one model, interleaved with mmpose's when ``mmpose`` (a
    :class:`MmposeSide`) is given: ({'infer': {label: stats}, 'train': {label: stats}}, forward GMACs per batch).
    ``train_runs`` 0 skips the training steps."""
    cfg, model = load_exp(EXPS[name], ['MODEL.PRETRAINED', ''])
    images, targets = _batch(cfg)
    gmacs = count_macs(model.eval(), images[:1]) * images.shape[0] / 1e9
    eval_gmacs = count_macs(model.eval(), images[:1], original=False) * images.shape[0] / 1e9
    loss, ref, rel = check_loss(model, cfg, images, targets)
    print('%s: fp32 loss %.3f vs per-sample original %.3f (rel. diff %.1e) %s'
          % (name, loss, ref, rel, 'OK' if rel < 1e-4 else 'MISMATCH'), flush=True)
    peer = {'mmpose 1.3.2 eager': lambda what: (lambda: mmpose(what, name))} if mmpose else {}
    variants = {k: f('infer') for k, f in peer.items()}
    variants.update(inference_variants(model, images, modes, compiled, onnx, onnx_spin))
    result = {'infer': interleave(variants, runs), 'eval_gmacs': eval_gmacs}
    _print_stats(name, 'inference', result['infer'])
    train_runs = runs if train_runs is None else train_runs
    if train_runs:
        variants = {k: f('train') for k, f in peer.items()}
        variants.update(train_variants(model, images, targets, modes))
        result['train'] = interleave(variants, train_runs)
        _print_stats(name, 'train step', result['train'])
    torch._dynamo.reset()
    return result, gmacs


def _print_stats(name, what, stats):
    for label, s in stats.items():
        print('  %s %-10s %-30s median %.3f s  min %.3f s  cpu %.3f s  (load %s)'
              % (name, what, label, s['median'], s['min'], s['cpu'], s['load']), flush=True)


def _ratio(ref, t):
    return '%.2fx' % (ref / t) if ref and t else '-'


def print_tables(table, peaks):
    """Markdown tables of every path's inference and training-step times (interleaved medians, minimum, CPU
    seconds per call, load), against mmpose's eager model when timed and the fp32 MAC floor."""
    peer = 'mmpose 1.3.2 eager'
    for what, other, head in (('infer', 'vs fp32 floor', 'inference'), ('train', 'vs orig-like', 'train step')):
        if not any(what in res for res, _ in table.values()):
            continue
        print('\n| model | %s path | median (s) | min (s) | CPU s/call | vs mmpose | %s | load 1 min |' % (head, other))
        print('|---|---|---|---|---|---|---|---|')
        for name, (res, gmacs) in table.items():
            stats = res.get(what, {})
            ref = stats.get(peer, {}).get('median')
            for label, st in stats.items():
                if what == 'infer':
                    third = '%.2fx' % (st['median'] / (gmacs / peaks['fp32'])) if label.startswith('fp32') else '-'
                else:
                    third = _ratio(stats.get('orig-like', {}).get('median'), st['median'])
                vs_peer = '-' if label == peer else _ratio(ref, st['median'])
                print('| %s | %s | %.3f | %.3f | %.3f | %s | %s | %s |' % (
                    name, label, st['median'], st['min'], st['cpu'], vs_peer, third, st['load']))


def print_peer_goals(table, mmpose, peaks):
    """Issue #17 §3: the fastest fp32 inference path at least 2x mmpose's eager model and within 1.3x of the
    MAC floor at the fp32 GEMM peak. ``mmpose``: {model: seconds} given on the command line (used when the
    run did not time mmpose itself)."""
    print('\nGoals of issue #17 part 3 (fp32 inference, medians; floor = the network\'s forward MACs as published / '
          'fp32 compute peak %.0f GMAC/s; eval floor = the MACs our eval forward computes, the same heatmaps)'
          % peaks['fp32'])
    print('\n| model | mmpose eager (s) | fastest ours (s) | path | vs mmpose (goal >= 2x) | floor (s) | '
          'vs floor (goal <= 1.3x) | eval floor (s) | vs eval floor | 2x mmpose above the floor? |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for name, (res, gmacs) in table.items():
        stats = res['infer']
        ref = stats.get('mmpose 1.3.2 eager', {}).get('median') or mmpose.get(name)
        fp32 = sorted((st['median'], label) for label, st in stats.items() if label.startswith('fp32'))
        if not fp32:
            continue
        (best, path), floor = fp32[0], gmacs / peaks['fp32']
        eval_floor = res.get('eval_gmacs', gmacs) / peaks['fp32']
        print('| %s | %s | %.3f | %s | %s | %.3f | %.2fx | %.3f | %.2fx | %s |' % (
            name, '%.3f' % ref if ref else '-', best, path, _ratio(ref, best), floor, best / floor, eval_floor,
            best / eval_floor,
            ('yes' if ref / 2 >= floor else 'no: %.3f s < floor' % (ref / 2)) if ref else '-'))


def print_goals(table, peaks):
    """Issues #4/#5: 2.5x (fp32) / 5x (bf16) the original as measured on the Xeon (ORIGINAL; meaningful on that
    machine only), the best median of this run and the MAC-bound floor."""
    print('\nGoals of issues #4/#5 against the original measured on the Xeon (docs/reference/rsn_mspn.md §8)')
    print('\n| model | what | goal (s) | best measured (s) | met | floor at the compute peak (s) |')
    print('|---|---|---|---|---|---|')
    for name, (res, gmacs) in table.items():
        for i, (what, passes) in enumerate((('train', 3), ('infer', 1))):
            for prec, factor in (('fp32', 2.5), ('bf16', 5.0)):
                times = [st['median'] for label, st in res.get(what, {}).items() if label.startswith(prec)]
                if not times or peaks[prec] != peaks[prec]:
                    continue
                goal, best = ORIGINAL[name][i] / factor, min(times)
                print('| %s | %s %s | %.3f | %.3f | %s | %.3f |' % (name, what, prec, goal, best,
                      'yes' if best <= goal else 'no', gmacs * passes / peaks[prec]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=list(EXPS), choices=list(EXPS))
    parser.add_argument('--runs', type=int, default=3, help='interleaved rounds of inference (after one warm-up)')
    parser.add_argument('--train-runs', type=int, help='interleaved rounds of training steps (default --runs; '
                        '0: no training steps)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES))
    parser.add_argument('--compile', action='store_true', help='also time TEST.COMPILE inference')
    parser.add_argument('--onnx', action='store_true',
                        help='also time onnxruntime inference of the exported model (pip install .[export])')
    parser.add_argument('--onnx-spin', action='store_true', help='with --onnx: also onnxruntime with spinning threads')
    parser.add_argument('--mmpose-python', help="python of a side environment with mmpose 1.3.2: also time its "
                        "eager inference and training step, interleaved with ours (tools/bench_mmpose_side.py)")
    parser.add_argument('--mmpose-times', nargs='+', metavar='MODEL=SECONDS', default=[],
                        help='or give mmpose inference times measured elsewhere')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    caps = torch.cpu.get_capabilities()
    native_bf16 = bool(caps.get('amx_bf16') or caps.get('avx512_bf16') or caps.get('bf16'))
    # Without native bf16 the 2048^3 bf16 product is emulated and takes minutes: no bf16 peak (nor floor) then,
    # nor when no bf16 mode runs (or oneDNN is capped below the CPU, ONEDNN_MAX_CPU_ISA, and would emulate it).
    bf16_runs = any(MODES[m][1] for m in args.modes)
    peaks = {'fp32': gemm_peak_gmacs(torch.float32),
             'bf16': gemm_peak_gmacs(torch.bfloat16) if native_bf16 and bf16_runs else float('nan')}
    print('CPU: %s, %s; fp32 compute peak %.0f GMAC/s on %d threads; load %.1f' % (
          caps.get('cpu_name', '?'), torch.backends.cpu.get_cpu_capability(), peaks['fp32'], args.threads, _load()),
          flush=True)
    side = MmposeSide(args.mmpose_python, args.threads) if args.mmpose_python else None
    table = {}
    try:
        for name in args.models:
            table[name] = bench_model(name, args.runs, args.modes, args.compile, args.onnx, side, args.train_runs,
                                      args.onnx_spin)
            # a shared machine only slows the peak down: the fastest of the start and after each model is the
            # best estimate
            peaks['fp32'] = max(peaks['fp32'], gemm_peak_gmacs(torch.float32))
    finally:
        if side:
            side.close()
    print('\nfp32 compute peak (fastest of the start and after each model) %.0f GMAC/s; load at the end %.1f'
          % (peaks['fp32'], _load()))
    print_tables(table, peaks)
    print_peer_goals(table, {k: float(v) for k, v in (t.split('=', 1) for t in args.mmpose_times)}, peaks)
    print_goals(table, peaks)


if __name__ == '__main__':
    main()
