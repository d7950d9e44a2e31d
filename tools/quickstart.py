"""Quick start: train RSN-18 on the shipped COCO subset, test it, and draw its predictions.

Runs the real exp scripts of ``projects/RSN/exps/RSN18.coco`` (the exp is not changed: only command-line
overrides for the data root, the output folder and a CPU-sized schedule), then:

1. tests on the shipped val2017 subset (ground-truth boxes) and prints the COCO AP table;
2. tests on the shipped train2017 subset, to show the network learned what it saw (AP well above zero);
3. draws the predicted skeletons on a few training images into ``<output>/vis/*.png`` (a few minutes of
   CPU training from scratch fit the 86 training people; on val images the network is still unsure).

On full COCO the same exp trains with ``python train.py DATASET.ROOT /path/to/coco`` (see the README).

    python tools/quickstart.py                 # ~7 minutes on 2 CPU cores (bf16, channels-last)
    python tools/quickstart.py --iters 20      # a smoke run (CI uses a version of this)
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:   # the drawing step imports cvpack here too, also from a checkout not pip-installed
    sys.path.insert(0, REPO)
EXP_DIR = osp.join(REPO, 'projects', 'RSN', 'exps', 'RSN18.coco')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iters', type=int, default=400, help='training iterations (default: 400)')
    parser.add_argument('--batch', type=int, default=16, help='images per iteration (default: 16)')
    parser.add_argument('--lr', type=float, default=2e-3, help='Adam learning rate (default: 2e-3)')
    parser.add_argument('--output', default=osp.join(REPO, 'model_logs', 'quickstart', 'RSN18.coco'),
                        help='output folder (emptied first)')
    parser.add_argument('--data', default=osp.join(REPO, 'dataset', 'coco_subset'), help='COCO root')
    parser.add_argument('--num-vis', type=int, default=4, help='training images to draw (default: 4)')
    parser.add_argument('--amp', default='auto', choices=['auto', 'bf16', 'none'],
                        help='autocast for training and testing; auto (default) = bf16 where the CPU has native '
                             'bf16 (AVX512-BF16/AMX: ~2x faster here), else fp32')
    return parser.parse_args(argv)


def run(script, args, env):
    cmd = [sys.executable, script] + [str(a) for a in args]
    print('\n$ (cd %s && %s)' % (osp.relpath(EXP_DIR, REPO), ' '.join(cmd[1:])), flush=True)
    subprocess.run(cmd, cwd=EXP_DIR, env=env, check=True)


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
    args = parse_args(argv)
    if args.amp == 'auto':
        import torch
        args.amp = 'bf16' if torch.ops.mkldnn._is_mkldnn_bf16_supported() else 'none'
    out = osp.abspath(args.output)
    if osp.isdir(out):
        shutil.rmtree(out)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    common = ['DATASET.ROOT', osp.abspath(args.data), 'OUTPUT_DIR', out,
              'TEST.USE_GT_BBOX', 'True', 'DATALOADER.NUM_WORKERS', '1', 'TEST.AMP', args.amp]
    # A CPU-sized schedule: the original's linear warm-up then linear decay, over a few hundred iterations.
    train = ['SOLVER.MAX_ITER', args.iters, 'SOLVER.CHECKPOINT_PERIOD', args.iters,
             'SOLVER.IMS_PER_GPU', args.batch, 'SOLVER.BASE_LR', args.lr,
             'SOLVER.WARMUP_ITERS', max(1, args.iters // 10), 'SOLVER.REFERENCE_WORLD_SIZE', 'None',
             'SOLVER.LOG_PERIOD', 20, 'SOLVER.AMP', args.amp]
    start = time.time()
    run('train.py', ['--no-auto-resume'] + common + train, env)
    run('test.py', ['-i', args.iters] + common, env)
    val_metrics = json.load(open(osp.join(out, 'test_dir', 'metrics.json')))
    train_dir = osp.join(out, 'test_on_train')
    run('test.py', ['-i', args.iters] + common + [
        'TEST_DIR', train_dir, 'DATASET.VAL_ANN', 'annotations/person_keypoints_train2017.json',
        'DATASET.VAL_IMAGES', 'images/train2017'], env)
    train_metrics = json.load(open(osp.join(train_dir, 'metrics.json')))
    images = draw_predictions(train_dir, args.data, 'train2017', osp.join(out, 'vis'), args.num_vis)
    print('\nquick start finished in %.0f s' % (time.time() - start))
    print('AP on the val subset:   %.3f' % val_metrics['metrics']['AP'])
    print('AP on the train subset: %.3f' % train_metrics['metrics']['AP'])
    print('skeleton images: %s' % ', '.join(osp.relpath(p, REPO) for p in images))
    return val_metrics, train_metrics


if __name__ == '__main__':
    main()
