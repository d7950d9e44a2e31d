"""Quick start: train RSN-18 on the shipped COCO subset, test it, and draw its predictions, in a time budget.

Runs the real exp scripts of ``projects/RSN/exps/RSN18.coco`` (the exp is not changed: only command-line
overrides for the data root, the output folder and a CPU-sized toy schedule), then:

1. tests on the shipped val2017 subset (ground-truth boxes) and prints the COCO AP table;
2. tests on the shipped train2017 subset, to show the network learned what it saw (AP well above zero);
3. draws the predicted skeletons on a few training images into ``<output>/vis/*.png``.

The schedule is sized to the CPU it runs on (docs/SPEED.md, "Quick start"): it picks the precision
(bf16 autocast only where the CPU has native bf16: AMX or AVX512-BF16, else fp32), times a few real
training steps and one test forward, then plans as many iterations as fit ``--minutes`` for the whole run
and says so before training. The toy schedule trains at 128x96 (a quarter of the exp's 256x192 MACs, so
four times the images in the same time; the target blurs scale with the heatmap).

On full COCO the same exp trains with ``python train.py DATASET.ROOT /path/to/coco`` (see the README).

The output folder is emptied first only when an earlier quick start made it (it carries the marker file
``.cvpack-quickstart``); any other non-empty folder is refused and left alone. Each step's output is also
written to ``<output>/logs/<step>.log``; a failing step ends the run with one line naming the step and that log.
Bad arguments exit 2 with one line.

    python tools/quickstart.py                 # under 10 minutes on any 2-core x86 CPU (--minutes 8)
    python tools/quickstart.py --iters 20      # a fixed schedule, no planning (CI uses a version of this)
"""
import json
import math
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import namedtuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:   # the planning and drawing steps import cvpack, also from a checkout not pip-installed
    sys.path.insert(0, REPO)
from cvpack.tools._cli import (OneLineParser, UsageError, die, nonnegative_int, positive_float,  # noqa: E402
                               positive_int)

EXP_DIR = osp.join(REPO, 'projects', 'RSN', 'exps', 'RSN18.coco')
NUM_TEST_PEOPLE = 125 + 86   # the shipped val and train subsets, both tested at the end
MARKER = '.cvpack-quickstart'   # in an output folder this script made: only such a folder is ever emptied


def parse_args(argv=None):
    """The arguments, checked: a bad one exits 2 with one line naming it (before anything runs)."""
    parser = OneLineParser(prog='tools/quickstart.py', description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=positive_float, default=8.0,
                        help='time budget of the whole run, planning, training, both tests and drawing included '
                             '(default: 8, so the run stays under 10 minutes on a busy machine)')
    parser.add_argument('--iters', type=positive_int, default=None,
                        help='a fixed number of training iterations instead of planning them from --minutes')
    parser.add_argument('--max-iters', type=positive_int, default=600,
                        help='the planner stops here on fast CPUs (default: 600, where the toy schedule has '
                             'learned the 86 training people well)')
    parser.add_argument('--batch', type=positive_int, default=8, help='images per iteration (default: 8)')
    parser.add_argument('--lr', type=positive_float, default=4e-3, help='Adam learning rate (default: 4e-3)')
    parser.add_argument('--input-size', type=positive_int, nargs=2, default=[128, 96], metavar=('H', 'W'),
                        help='network input, multiples of 32 (default: 128 96; the exp itself uses 256 192)')
    parser.add_argument('--output', default=osp.join(REPO, 'model_logs', 'quickstart', 'RSN18.coco'),
                        help='output folder: new, empty, or made by an earlier quick start (then emptied first)')
    parser.add_argument('--data', default=osp.join(REPO, 'dataset', 'coco_subset'), help='COCO root')
    parser.add_argument('--num-vis', type=nonnegative_int, default=4, help='training images to draw (default: 4)')
    parser.add_argument('--amp', default='auto', choices=['auto', 'bf16', 'none'],
                        help='autocast for training and testing; auto (default) = bf16 where the CPU has native '
                             'bf16 (AMX or AVX512-BF16: about 2x faster, docs/SPEED.md), else fp32')
    args = parser.parse_args(argv)
    try:
        toy_overrides(args.input_size)
    except ValueError as e:
        parser.error(str(e))
    if not osp.isdir(osp.join(args.data, 'annotations')):
        parser.error('--data %s: not a COCO root (no annotations folder)' % args.data)
    return args


def native_bf16(caps=None):
    """True when the CPU computes bf16 natively (x86 AMX-BF16 or AVX512-BF16; ARM BF16 dot products).

    ``caps`` is ``torch.cpu.get_capabilities()`` (public since torch 2.9): without these instructions
    oneDNN emulates bf16 through fp32 and autocast is slower than plain fp32.
    """
    if caps is None:
        import torch
        caps = torch.cpu.get_capabilities()
    return bool(caps.get('amx_bf16') or caps.get('avx512_bf16') or caps.get('bf16'))


def toy_overrides(input_size):
    """Command-line overrides of the toy schedule at ``input_size`` (h, w): the heatmap is a quarter of the
    input, the target and test blurs shrink with it (the exp's kernels are for a 64x48 heatmap), and the
    augmentation is mild."""
    h, w = int(input_size[0]), int(input_size[1])
    if h % 32 or w % 32:
        raise ValueError('--input-size %d %d: both sides must be multiples of 32 (RSN downsamples 32x)' % (h, w))
    scale = h / 256.0
    odd = lambda k: max(3, int(round(k * scale)) // 2 * 2 + 1)   # noqa: E731 (the next odd size, at least 3)
    kernels = [[odd(k), odd(k)] for k in (15, 11, 9, 7, 5)]
    # Mild augmentation: the demo shows the network fitting the 86 training people within minutes, so the
    # training crops match the test crops (the test's box extension, no random extension, half-body or
    # rotation; +-10 % scale, flips kept). The exp's own augmentation is for full COCO.
    augment = ['DATASET.TRAIN.BASIC_EXTENTION', 0.0, 'DATASET.TRAIN.RANDOM_EXTENTION', False,
               'DATASET.TRAIN.X_EXTENTION', 0.09, 'DATASET.TRAIN.Y_EXTENTION', 0.135,
               'DATASET.TRAIN.SCALE_SHRINK_RATIO', 1.0, 'DATASET.TRAIN.SCALE_FACTOR_LOW', -0.1,
               'DATASET.TRAIN.SCALE_FACTOR_HIGH', 0.1, 'DATASET.TRAIN.PROB_ROTATION', 0.0,
               'DATASET.TRAIN.PROB_HALF_BODY', 0.0]
    return ['INPUT_SHAPE', [h, w], 'OUTPUT_SHAPE', [h // 4, w // 4], 'DATASET.TRAIN.GAUSSIAN_KERNELS', kernels,
            'TEST.GAUSSIAN_KERNEL', odd(5)] + augment


Plan = namedtuple('Plan', 'iters batch train_s total_s fits')


def plan_schedule(step_s, budget_s, spent_s, after_s, batch, min_iters=20, max_iters=600):
    """The number of training iterations that fits a time budget.

    Args:
        step_s: measured seconds per training iteration (data included) at ``batch``.
        budget_s: seconds for the whole quick start.
        spent_s: seconds already used (planning).
        after_s: estimated seconds of everything but the iterations still to come (starting the training
            process, both tests, drawing).
    Returns:
        Plan(iters, batch, train_s, total_s, fits): ``iters`` is the most that fit, within
        [min_iters, max_iters]; ``fits`` is False when even ``min_iters`` overrun the budget.
    """
    if step_s <= 0 or batch <= 0:
        raise ValueError('plan_schedule: step_s (%r) and batch (%r) must be positive' % (step_s, batch))
    left = budget_s - spent_s - after_s
    iters = min(max_iters, max(min_iters, int(math.floor(left / step_s))))
    train_s = iters * step_s
    total_s = spent_s + after_s + train_s
    return Plan(iters, batch, train_s, total_s, total_s <= budget_s)


def measure(opts, batch, steps=5):
    """Time the real training step and a test forward of the exp under ``opts``, in this process.

    Builds the exp's trainer (dataset, model, optimizer) exactly as ``train.py`` will, runs one warm-up step
    (oneDNN picks its kernels there) and ``steps`` timed ones on real batches, then one eval forward.
    Returns a dict of seconds: ``setup`` (importing torch and building), ``step`` (the mean: on a 2-core
    machine a few steps in each ten take 1.5-2x the median, and the plan must count them; docs/SPEED.md),
    ``first_step``, ``infer`` (one eval forward of ``batch`` images, no flip).
    """
    t0 = time.perf_counter()
    import torch
    from cvpack.engine.launch import setup_distributed
    from cvpack.engine.trainer import Trainer
    from cvpack.engine.utils import autocast, resolve_cfg, to_device
    from cvpack.exp import import_exp_module
    config = import_exp_module(EXP_DIR, 'config')
    network = import_exp_module(EXP_DIR, 'network', aliases={'config': config})
    cfg = resolve_cfg(config.cfg, opts + ['SOLVER.MAX_ITER', steps + 2, 'SOLVER.WARMUP_ITERS', 1])
    trainer = Trainer(cfg, network.build_model, setup_distributed('cpu'))
    loader = iter(trainer.build_loader())
    setup = time.perf_counter() - t0
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        batch_data = next(loader)
        trainer.step(batch_data, i + 1)
        times.append(time.perf_counter() - t)
    model = trainer.model.eval()
    images = to_device(batch_data, torch.device('cpu'), cfg.MODEL.CHANNELS_LAST)['image']
    with torch.no_grad(), autocast(trainer.amp, torch.device('cpu')):
        t = time.perf_counter()
        model(images)
        infer = time.perf_counter() - t
    del loader, trainer, model
    return {'setup': setup, 'first_step': times[0], 'step': statistics.mean(times[1:]), 'infer': infer}


def estimate_after(m, batch):
    """Seconds the run needs besides its planned iterations: three processes start and build (train, two
    tests), the first training step is slower, and both tests forward every person twice (flip)."""
    tests = NUM_TEST_PEOPLE * 2 * m['infer'] / batch
    return 3 * m['setup'] + (m['first_step'] - m['step']) + tests + 10.0   # + evaluation, checkpoint, drawing


def cpu_name():
    import torch
    caps = torch.cpu.get_capabilities()
    return '%s, %s%s' % (caps.get('cpu_name') or caps.get('architecture', '?'), torch.backends.cpu.get_cpu_capability(),
                         ', native bf16' if native_bf16(caps) else '')


class StepFailed(Exception):
    """A step of the quick start failed; the message names the step and its log."""

    def __init__(self, step, log, why):
        super().__init__('step %r failed (%s); its log: %s' % (step, why, log))


def prepare_output(out):
    """Make ``out`` the run's empty output folder, marked as the quick start's (``MARKER``).

    A folder that carries the marker was made by an earlier quick start: it is removed and made again. Any
    other existing folder is used only when empty; a non-empty one (or a file) raises UsageError and is left
    as it is: --output may name a user's folder, and nothing of theirs is deleted."""
    if osp.lexists(out) and not osp.isdir(out):
        raise UsageError('--output %s: exists and is not a folder' % out)
    if osp.isdir(out):
        if osp.isfile(osp.join(out, MARKER)):
            try:
                shutil.rmtree(out)
            except OSError as e:   # a link to the folder, a file in use ...
                raise UsageError('--output %s: cannot empty the folder (%s)' % (out, e.strerror or e)) from None
        elif os.listdir(out):
            raise UsageError('--output %s: the folder is not empty and has no %s file (the quick start marks '
                             'the folders it makes; those of quick starts before 2026-12-02 are unmarked); it is left '
                             'alone: delete it yourself or give a new or an empty folder' % (out, MARKER))
    try:
        os.makedirs(out, exist_ok=True)
        with open(osp.join(out, MARKER), 'w') as f:
            f.write('made by tools/quickstart.py: the next quick start into this folder deletes it first\n')
    except OSError as e:
        raise UsageError('--output %s: cannot create the folder (%s)' % (out, e.strerror or e)) from None


def _copy_output(stream, log_path):
    """Copy a step's output (bytes, as they come: tqdm's \\r updates too) to our stdout and to its log."""
    sink = getattr(sys.stdout, 'buffer', None)
    with open(log_path, 'wb') as log:
        for chunk in iter(lambda: stream.read1(65536), b''):
            log.write(chunk)
            log.flush()
            if sink is not None:
                sink.write(chunk)
                sink.flush()
            else:
                sys.stdout.write(chunk.decode(errors='replace'))


def start_step(step, script, args, env, out, cwd=None):
    """Start ``script`` (in the exp folder unless ``cwd``), its output shown and kept in out/logs/<step>.log.
    Returns (process, copying thread, log path)."""
    cwd = cwd or EXP_DIR
    cmd = [sys.executable, script] + [str(a) for a in args]
    print('\n$ (cd %s && %s)' % (osp.relpath(cwd, REPO), ' '.join(cmd[1:])), flush=True)
    log = osp.join(out, 'logs', step + '.log')
    os.makedirs(osp.dirname(log), exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    copier = threading.Thread(target=_copy_output, args=(proc.stdout, log), daemon=True)
    copier.start()
    return proc, copier, log


def run_step(step, script, args, env, out, cwd=None):
    """Run a step to its end; StepFailed naming it and its log when it exits non-zero."""
    proc, copier, log = start_step(step, script, args, env, out, cwd)
    try:
        proc.wait()
    finally:
        _stop(proc, copier)
    if proc.returncode:
        raise StepFailed(step, log, 'exit code %d' % proc.returncode)


def _stop(proc, copier):
    if proc.poll() is None:   # interrupted (Ctrl-C): do not leave the step running
        proc.kill()
        proc.wait()
    copier.join()


def in_process_step(step, out, fn, *args):
    """``fn(*args)`` run here; its exception becomes StepFailed, the traceback written to out/logs/<step>.log."""
    try:
        return fn(*args)
    except Exception as e:
        log = osp.join(out, 'logs', step + '.log')
        os.makedirs(osp.dirname(log), exist_ok=True)
        with open(log, 'w') as f:
            f.write(traceback.format_exc())
        raise StepFailed(step, log, '%s: %s' % (type(e).__name__, e)) from e


def read_metrics(step, test_dir, out):
    """The metrics.json a test step wrote (StepFailed naming the step when it is missing or unreadable)."""
    return in_process_step(step, out, _load_json, osp.join(test_dir, 'metrics.json'))


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def last_checkpoint(out):
    """The highest N of the ``iter-N.pth`` files in ``out`` (written atomically by the trainer), or 0."""
    done = [int(f[5:-4]) for f in os.listdir(out) if f.startswith('iter-') and f[5:-4].isdigit()] \
        if osp.isdir(out) else []
    return max(done, default=0)


def run_training(args, env, out, deadline=None, poll_s=1.0, script='train.py', cwd=None):
    """Run train.py (step 'train', log out/logs/train.log); past ``deadline`` (time.perf_counter()), stop it
    at its latest checkpoint.

    The schedule was sized to the speed measured before training; when the CPU gets busier afterwards
    (a shared machine), the run stops at the last checkpoint once the deadline has passed, so the quick
    start still ends near its budget. Returns the iteration of the checkpoint to test; StepFailed when
    train.py fails or ends without a checkpoint.
    """
    proc, copier, log = start_step('train', script, args, env, out, cwd)
    try:
        while proc.poll() is None:
            time.sleep(poll_s)
            if deadline is not None and time.perf_counter() > deadline and last_checkpoint(out):
                proc.terminate()
                proc.wait()
                done = last_checkpoint(out)
                print('\nthe time budget is up: training stopped at its checkpoint of iteration %d (this CPU got '
                      'slower than when it was timed; is it shared?)' % done, flush=True)
                return done
    finally:
        _stop(proc, copier)
    if proc.returncode:
        raise StepFailed('train', log, 'exit code %d' % proc.returncode)
    if not last_checkpoint(out):
        raise StepFailed('train', log, 'no iter-N.pth checkpoint in %s' % out)
    return last_checkpoint(out)


def draw_predictions(test_dir, data_root, split, out_dir, num_images, score_thresh=0.5):
    """Draw the instances of ``test_dir/results.json`` on the ``num_images`` images of ``split`` with most people."""
    from cvpack.data.io import read_image
    from cvpack.data.meta import COCO
    from cvpack.vis import draw_skeleton, save_png
    import numpy as np

    with open(osp.join(test_dir, 'results.json')) as f:
        results = json.load(f)
    with open(osp.join(data_root, 'annotations', 'person_keypoints_%s.json' % split)) as f:
        files = {im['id']: im['file_name'] for im in json.load(f)['images']}
    by_image = {}
    if results and max(r['score'] for r in results) < score_thresh:
        print('no person scored %.2f or more (too little training): drawing every prediction' % score_thresh)
        score_thresh = -np.inf
    for r in results:
        if r['score'] >= score_thresh:
            by_image.setdefault(r['image_id'], []).append(np.asarray(r['keypoints'], np.float32).reshape(-1, 3))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for image_id in sorted(by_image, key=lambda i: -len(by_image[i]))[:num_images]:
        image = read_image(osp.join(data_root, 'images', split, files[image_id]))
        # Megvii keypoint scores are heatmap/255 + 0.5: 0.5 means no evidence. A few minutes of training leave
        # low peaks (scores ~0.51-0.56) that are already in the right places, so any evidence is drawn.
        drawn = draw_skeleton(image, np.stack(by_image[image_id]), COCO, kp_thresh=0.505)
        path = osp.join(out_dir, '%012d.png' % image_id)
        save_png(path, drawn)
        written.append(path)
    return written


def main(argv=None):
    """The quick start; returns (val metrics, train metrics). A failing step exits 1 with one line naming it and
    its log; bad arguments exit 2 with one line."""
    t_start = time.perf_counter()
    args = parse_args(argv)
    args.output = osp.abspath(args.output)
    try:
        prepare_output(args.output)
    except UsageError as e:
        die('tools/quickstart.py: error: %s' % e)
    try:
        return _quickstart(args, t_start)
    except StepFailed as e:
        die('tools/quickstart.py: error: %s' % e, code=1)


def _plan(args, opts, size, precision, t_start):
    """(iterations, deadline) that fit --minutes on this CPU, measured (in process, step 'plan')."""
    print('planning: timing RSN-18 training steps of batch %d at %s in %s on this CPU (%s) ...'
          % (args.batch, size, precision, cpu_name()), flush=True)
    m = in_process_step('plan', args.output, measure, opts, args.batch)
    spent = time.perf_counter() - t_start
    plan = plan_schedule(m['step'], 60.0 * args.minutes, spent, estimate_after(m, args.batch), args.batch,
                         max_iters=args.max_iters)
    deadline = t_start + 60.0 * args.minutes - (plan.total_s - plan.train_s - spent)
    print('plan: %d iterations of batch %d at %s in %s, about %.1f minutes of training on this CPU '
          '(%.2f s per iteration measured); the whole quick start about %.1f minutes (budget %.1f)'
          % (plan.iters, args.batch, size, precision, plan.train_s / 60, m['step'], plan.total_s / 60,
             args.minutes), flush=True)
    if not plan.fits:
        print('warning: even %d iterations overrun the %.1f-minute budget on this CPU (is it busy?); '
              'the network will learn little' % (plan.iters, args.minutes), flush=True)
    return plan.iters, deadline


def _quickstart(args, t_start):
    # Idle OpenMP threads sleep instead of spinning (read when torch loads, so set first; the subprocesses
    # inherit it). With the data worker and any other process sharing 2 cores, spinning threads made a
    # training step 5-8x slower (docs/SPEED.md, "Quick start").
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    if args.amp == 'auto':
        args.amp = 'bf16' if native_bf16() else 'none'
    precision = 'bf16 autocast' if args.amp == 'bf16' else 'fp32'
    out = args.output
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    common = ['DATASET.ROOT', osp.abspath(args.data), 'OUTPUT_DIR', out, 'TEST.USE_GT_BBOX', 'True',
              'DATALOADER.NUM_WORKERS', '1', 'TEST.AMP', args.amp] + toy_overrides(args.input_size)
    # The original's linear warm-up then linear decay, over however many iterations the budget allows.
    solver = ['SOLVER.IMS_PER_GPU', args.batch, 'SOLVER.BASE_LR', args.lr, 'SOLVER.REFERENCE_WORLD_SIZE', 'None',
              'SOLVER.LOG_PERIOD', 20, 'SOLVER.AMP', args.amp]
    size = '%dx%d' % tuple(args.input_size)
    if args.iters is None:
        iters, deadline = _plan(args, common + solver + ['TENSORBOARD_DIR', ''], size, precision, t_start)
    else:
        iters, deadline = args.iters, None
        print('fixed schedule: %d iterations of batch %d at %s in %s' % (iters, args.batch, size, precision))
    # Checkpoints every tenth of the schedule: where training stops if the budget runs out before it ends.
    period = max(1, iters // 10) if deadline else iters
    train = solver + ['SOLVER.MAX_ITER', iters, 'SOLVER.CHECKPOINT_PERIOD', period,
                      'SOLVER.WARMUP_ITERS', max(1, iters // 10)]
    trained = run_training(['--no-auto-resume'] + common + train, env, out, deadline)
    run_step('test-val', 'test.py', ['-i', trained] + common, env, out)
    val_metrics = read_metrics('test-val', osp.join(out, 'test_dir'), out)
    train_dir = osp.join(out, 'test_on_train')
    run_step('test-train', 'test.py', ['-i', trained] + common + [
        'TEST_DIR', train_dir, 'DATASET.VAL_ANN', 'annotations/person_keypoints_train2017.json',
        'DATASET.VAL_IMAGES', 'images/train2017'], env, out)
    train_metrics = read_metrics('test-train', train_dir, out)
    images = in_process_step('draw', out, draw_predictions, train_dir, args.data, 'train2017', osp.join(out, 'vis'),
                             args.num_vis)
    print('\nquick start finished in %.1f minutes (%d%s iterations of batch %d at %s, %s)'
          % ((time.perf_counter() - t_start) / 60, trained, '' if trained == iters else ' of %d' % iters,
             args.batch, size, precision))
    print('AP on the val subset:   %.3f' % val_metrics['metrics']['AP'])
    print('AP on the train subset: %.3f' % train_metrics['metrics']['AP'])
    print('skeleton images: %s' % ', '.join(osp.relpath(p, REPO) for p in images))
    return val_metrics, train_metrics


if __name__ == '__main__':
    main()
