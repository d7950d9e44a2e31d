"""What one evaluation (test.py, or TEST.EVAL_PERIOD during training) costs per person box, and the estimate for
full COCO val2017 (docs/ENGINE.md "Evaluation during training").

    PYTHONPATH=$PWD python tools/bench_eval.py [--exp projects/RSN/exps/RSN18.coco] [--root dataset/coco_subset]
        [--threads 2] [--device cpu] [--images 5000] [--boxes 104125] [KEY VALUE ...]

The exp's own test pipeline (tester.run_inference + its predictor: flip test, TEST.IMS_PER_GPU, decoder) on the
shipped subset's val split, once with the detection file (TEST.DET_FILE) and once with GT boxes, one process,
DATALOADER.NUM_WORKERS 0 (so the loading is measured by itself). Random weights: the cost does not depend on them.
  data   s/box: the val DataLoader alone (image decode + affine crop + collate)
  model  s/box: run_inference minus data (forward with flip, decode, rescoring)
  eval   s:     the exp's evaluator (NMS, results.json, pycocotools) on the instances of the subset
  eval_full s:  the evaluator at full size: IMAGES images cycled from the images the detection file covers (their GT
                copied under new ids), with BOXES predictions in all (the best-scored of each image, repeated as
                needed): pycocotools' cost at COCO val's scale.
Estimate: T = BOXES * (data / max(1, NUM_WORKERS) + model) + eval_full.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cvpack.engine.launch import setup_distributed  # noqa: E402
from cvpack.engine.tester import run_inference  # noqa: E402
from cvpack.engine.trainer import default_collate, default_dataset_builder  # noqa: E402
from cvpack.engine.utils import prepare_model, resolve_cfg  # noqa: E402
from cvpack.evaluation import build_evaluator  # noqa: E402
from cvpack.exp import import_exp_module, load_exp  # noqa: E402
from cvpack.inference import build_predictor  # noqa: E402


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def measure(cfg, model, ctx, gt_boxes, out_dir):
    """Per-box data and model seconds and the evaluator's seconds on the subset for one box source."""
    cfg = resolve_cfg(cfg, ['TEST.USE_GT_BBOX', str(gt_boxes)])
    dataset = default_dataset_builder(cfg, 'val')
    loader = torch.utils.data.DataLoader(dataset, batch_size=int(cfg.TEST.IMS_PER_GPU), num_workers=0,
                                         collate_fn=default_collate())
    _, t_data = _timed(lambda: [None for _ in loader])
    with torch.no_grad():
        instances, t_all = _timed(lambda: run_inference(model, dataset, build_predictor(cfg), cfg, ctx,
                                                        default_collate(), progress=False))
    _, t_eval = _timed(lambda: build_evaluator(cfg)(instances, out_dir))
    n = len(dataset)
    return {'boxes': n, 'data': t_data / n, 'model': (t_all - t_data) / n, 'eval': t_eval}, instances


def full_size_eval(cfg, instances, images, boxes, out_dir):
    """Seconds of the evaluator on ``images`` images / ``boxes`` predictions cycled from ``instances``' images."""
    with open(os.path.join(cfg.DATASET.ROOT, cfg.DATASET.VAL_ANN)) as f:
        gt = json.load(f)
    by_image = {}
    for inst in sorted(instances, key=lambda i: -float(i['score'])):
        by_image.setdefault(inst['image_id'], []).append(inst)
    sources = sorted(by_image)
    anns = {}
    for a in gt['annotations']:
        anns.setdefault(a['image_id'], []).append(a)
    info = {im['id']: im for im in gt['images']}
    new_gt = dict(gt, images=[], annotations=[])
    preds = []
    for k in range(images):
        src, new_id = sources[k % len(sources)], 10 ** 8 + k
        new_gt['images'].append(dict(info[src], id=new_id))
        for a in anns.get(src, []):
            new_gt['annotations'].append(dict(a, image_id=new_id, id=len(new_gt['annotations']) + 1))
        count = boxes * (k + 1) // images - boxes * k // images
        preds += [dict(by_image[src][j % len(by_image[src])], image_id=new_id) for j in range(count)]
    path = os.path.join(out_dir, 'val_full.json')
    with open(path, 'w') as f:
        json.dump(new_gt, f)
    cfg = resolve_cfg(cfg, ['DATASET.ROOT', out_dir, 'DATASET.VAL_ANN', 'val_full.json'])
    _, seconds = _timed(lambda: build_evaluator(cfg)(preds, out_dir))
    return seconds, len(new_gt['annotations'])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--exp', default='projects/RSN/exps/RSN18.coco')
    p.add_argument('--root', default='dataset/coco_subset')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--device', default='cpu')
    p.add_argument('--images', type=int, default=5000, help='full val images (COCO val2017: 5000)')
    p.add_argument('--boxes', type=int, default=104125, help='full val boxes (the AP_H_56 detection file: 104125)')
    p.add_argument('opts', nargs='*', help='KEY VALUE overrides of the exp config')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg, _ = load_exp(args.exp, ['DATASET.ROOT', os.path.abspath(args.root), 'MODEL.DEVICE', args.device,
                                 'DATALOADER.NUM_WORKERS', '0'] + args.opts, build=False)
    network = import_exp_module(args.exp, 'network', aliases={'config': import_exp_module(args.exp, 'config')})
    ctx = setup_distributed(args.device)
    model = prepare_model(network.build_model(cfg), cfg, ctx, None).eval()
    print('exp %s, device %s, %d threads, TEST.FLIP %s, TEST.IMS_PER_GPU %s, load before: %s' % (
        args.exp, ctx.device, torch.get_num_threads(), cfg.TEST.FLIP, cfg.TEST.IMS_PER_GPU,
        open('/proc/loadavg').read().split()[:3]))
    with tempfile.TemporaryDirectory() as tmp:
        measure(cfg, model, ctx, True, tmp)   # warm-up: first calls allocate and pick kernels
        rows = {}
        for name, gt_boxes in (('detections', False), ('GT boxes', True)):
            rows[name], instances = measure(cfg, model, ctx, gt_boxes, tmp)
            if not gt_boxes:
                full, n_gt = full_size_eval(cfg, instances, args.images, args.boxes, tmp)
    print('%-11s %6s %12s %12s %9s' % ('boxes', 'n', 'data s/box', 'model s/box', 'eval s'))
    for name, r in rows.items():
        print('%-11s %6d %12.4f %12.4f %9.2f' % (name, r['boxes'], r['data'], r['model'], r['eval']))
    d = rows['detections']
    print('evaluator at full size (%d images, %d GT people, %d predictions): %.1f s'
          % (args.images, n_gt, args.boxes, full))
    print('estimate for %d boxes, NUM_WORKERS 0: %d * (%.4f + %.4f) + %.0f = %.0f s (%.2f h); load after: %s' % (
        args.boxes, args.boxes, d['data'], d['model'], full, args.boxes * (d['data'] + d['model']) + full,
        (args.boxes * (d['data'] + d['model']) + full) / 3600, open('/proc/loadavg').read().split()[:3]))


if __name__ == '__main__':
    main()
