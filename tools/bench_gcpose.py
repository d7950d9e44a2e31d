"""GCPose / Keypoint R-CNN CPU speed: inference images/s at short side 800, one training iteration (2 images),
RoIAlign and NMS throughput for 1000 boxes.

    PYTHONPATH=. python tools/bench_gcpose.py [--threads 2] [--exp gcpose.R50.coco] [--skip-model]

Random weights: with untrained heads every image yields the full 100 detections, so the keypoint head runs
on 100 RoIs per image (the test-time worst case). Run once on a calm machine; figures go to the README.
"""
import argparse
import os.path as osp
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from cvpack.ops import batched_nms, multilevel_roi_align, nms, roi_align  # noqa: E402


def _timeit(fn, repeat):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def _random_boxes(n, w, h, g, min_side=16, max_side=400):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = min_side + torch.rand(n, 2, generator=g) * (max_side - min_side)
    return torch.cat([xy, xy + wh], 1)


def bench_ops(repeat):
    g = torch.Generator().manual_seed(0)
    boxes = _random_boxes(1000, 1216, 800, g)
    scores = torch.rand(1000, generator=g)
    print('NMS, 1000 boxes (IoU 0.5): %.1f ms' % (1e3 * _timeit(lambda: nms(boxes, scores, 0.5), repeat)))
    lv = torch.randint(0, 5, (1000,), generator=g)
    t = _timeit(lambda: batched_nms(boxes, scores, lv, 0.7), repeat)
    print('batched NMS, 1000 boxes, 5 groups (IoU 0.7): %.1f ms' % (1e3 * t))
    feats = [torch.randn(1, 256, 800 // s, 1216 // s, generator=g) for s in (4, 8, 16, 32)]
    t = _timeit(lambda: multilevel_roi_align(feats, [boxes], 7, (4, 8, 16, 32)), 1)
    print('box pooler: RoIAlign 7x7 adaptive over P2-P5 (FPN levels), 1000 boxes (16-400 px), 800x1216 input: '
          '%.2f s (%.0f boxes/s)' % (t, 1000 / t))
    p2 = feats[0]
    for n, hi in ((1000, 112), (100, 400)):
        rois = torch.cat([torch.zeros(n, 1), _random_boxes(n, 1216, 800, g, 16, hi) * 1.0], 1)
        t = _timeit(lambda rois=rois: roi_align(p2, rois, 14, 0.25, 0, border='zeros'), 1)
        print('GCPose keypoint pooler: RoIAlign 14x14 zeros border on P2 only, %d boxes (16-%d px): '
              '%.2f s (%.0f boxes/s)' % (n, hi, t, n / t))


def bench_model(exp):
    sys.path.insert(0, osp.join(ROOT, 'projects', 'GCPose', 'exps', exp))
    from config import cfg  # noqa: E402
    from network import build_model  # noqa: E402
    torch.manual_seed(0)
    model = build_model(cfg)
    h, w = 800, 1216
    img = torch.randn(1, 3, h, w)
    model.eval()
    t = _timeit(lambda: model(img, {'image_size': [(h, w)]}), 1)
    n = len(model(img, {'image_size': [(h, w)]})[0]['scores'])
    print('%s inference, 1 image %dx%d (%d detections): %.2f s/image = %.3f images/s' % (exp, h, w, n, t, 1 / t))
    kp = torch.zeros(3, 17, 3)
    kp[..., 0] = torch.linspace(300, 500, 17)
    kp[..., 1] = torch.linspace(200, 700, 17)
    kp[..., 2] = 2
    targets = {'image_size': [(h, w)] * 2,
               'gt_boxes': [torch.tensor([[280., 180, 520, 720], [600, 100, 800, 600], [50, 50, 250, 400]])] * 2,
               'gt_keypoints': [kp] * 2}
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)

    def step():
        losses = model(torch.randn(2, 3, h, w), targets)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    t = _timeit(step, 1)
    print('%s training iteration, 2 images %dx%d: %.2f s/iter = %.3f images/s' % (exp, h, w, t, 2 / t))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--exp', default='gcpose.R50.coco')
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--skip-model', action='store_true')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print('torch %s, %d threads' % (torch.__version__, torch.get_num_threads()))
    bench_ops(args.repeat)
    if not args.skip_model:
        bench_model(args.exp)


if __name__ == '__main__':
    main()
