"""Look at what an exp's data pipeline produces: ground truth, and the training crops with their targets.

``python -m cvpack.tools.browse_dataset EXP_DIR [--split train|val] [--n 8] [--augmented] [--out DIR]
[--opts KEY VALUE ...]`` writes PNG files into ``--out`` (default ``browse_<split>``):

- default: ``gt_<image id>.png``, the first N images of the split with every annotated person drawn (joints
  with v > 0, skeleton and colours of the dataset metadata, boxes); the val split shows the GT, not detections.
- ``--augmented``: ``aug_<i>.png``, samples 0..N-1 exactly as the model gets them (augmented when the split
  is 'train'), de-normalised, with the target heatmaps (max over joints; the sharpest kernel of a megvii / cpn
  target) overlaid in the JET colours; whole-image samples (GCPose) show their resized, flipped image with the
  boxes and keypoints. The augmentation RNG is seeded (``--seed``), so two runs write the same files.
The fastest way to see a data-pipeline bug (as mmpose's ``browse_dataset``).
"""
import copy
import os.path as osp
import random

import cv2
import numpy as np

from ..data import build_dataset
from ..data.io import read_image
from ..data.meta_file import dataset_meta
from ..exp import load_exp
from ..vis import draw_skeleton, save_png
from ._cli import OneLineParser, UsageError, check_exp_dir, die, positive_int

PROG = 'python -m cvpack.tools.browse_dataset'

__all__ = ['main', 'draw_ground_truth', 'denormalize', 'overlay_heatmaps']

BOX_COLOR = (0, 255, 255)


def _box(image, xyxy):
    x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
    cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOR, 1, cv2.LINE_AA)


def draw_ground_truth(dataset, meta, n):
    """[(image id, drawn BGR image)] for the first ``n`` images of the dataset's records (all their people)."""
    by_image = {}
    for rec in dataset.records:   # all of them: a file may list an image's people apart
        by_image.setdefault(rec.get('image_path', rec.get('file')), []).append(rec)
    out = []
    for path, recs in list(by_image.items())[:n]:
        image = read_image(path)
        if 'boxes' in recs[0]:   # whole-image records: all people of the image, continuous coordinates
            kps = np.asarray(recs[0]['keypoints'], np.float64).copy()
            kps[..., :2] -= 0.5
            boxes = list(recs[0]['boxes'])
        else:                    # one top-down record per person, xywh boxes
            kps = np.stack([np.asarray(r['joints'], np.float64) for r in recs])
            boxes = [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (np.asarray(r['bbox'], float) for r in recs)]
        image = draw_skeleton(image, kps.reshape(-1, meta.num_keypoints, 3), meta, kp_thresh=0.5)
        for b in boxes:
            _box(image, b)
        out.append((recs[0]['image_id'], image))
    return out


def denormalize(tensor, cfg):
    """A normalised (3, H, W) sample image -> uint8 BGR (H, W, 3), undoing the exp's normalisation."""
    img = np.asarray(tensor, np.float32).transpose(1, 2, 0)
    if 'PIXEL_MEAN' in cfg.INPUT:             # 0-255 units (GCPose's whole-image preset)
        img = img * np.asarray(cfg.INPUT.PIXEL_STD, np.float32) + np.asarray(cfg.INPUT.PIXEL_MEAN, np.float32)
    else:                                     # 0-1 units
        img = (img * np.asarray(cfg.INPUT.STDS, np.float32) + np.asarray(cfg.INPUT.MEANS, np.float32)) * 255.0
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., ::-1]) if cfg.DATASET.COLOR_RGB else img


def overlay_heatmaps(image_bgr, target, alpha=0.5):
    """``image_bgr`` with the target heatmaps blended in (JET colours) where the target is above 2 % of its peak.

    target: (K, h, w), or (L, K, h, w) with one map per kernel (the last, sharpest, is shown); resized to the
    image with bilinear interpolation. Pixels without target keep the image unchanged.
    """
    t = np.asarray(target, np.float32)
    if t.ndim == 4:
        t = t[-1]
    heat = t.max(axis=0)
    peak = float(heat.max())
    if peak <= 0:
        return image_bgr.copy()
    heat = cv2.resize(heat / peak, (image_bgr.shape[1], image_bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
    color = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    blend = cv2.addWeighted(image_bgr, 1 - alpha, color, alpha, 0)
    return np.where((heat > 0.02)[..., None], blend, image_bgr)


def draw_sample(sample, cfg, meta):
    """One dataset sample as the model sees it (see the module docstring)."""
    image = denormalize(sample['image'], cfg)
    if 'target' in sample:
        return overlay_heatmaps(image, sample['target'])
    if 'gt_keypoints' in sample and len(sample['gt_keypoints']):
        kps = np.asarray(sample['gt_keypoints'], np.float64).copy()
        image = draw_skeleton(image, kps, meta, kp_thresh=0.5)
        for b in np.asarray(sample['gt_boxes']):
            _box(image, b)
    return image


def main(argv=None):
    p = OneLineParser(prog=PROG, description=__doc__.split('\n\n')[0])
    p.add_argument('exp_dir', help='exp folder (config.py, network.py)')
    p.add_argument('--split', default='train', choices=('train', 'val'))
    p.add_argument('--n', type=positive_int, default=8, help='images (GT) or samples (--augmented) to draw')
    p.add_argument('--augmented', action='store_true', help='the samples after augmentation, with targets')
    p.add_argument('--out', default=None, help='output folder (default browse_<split>)')
    p.add_argument('--seed', type=int, default=0, help='augmentation RNG seed')
    p.add_argument('--opts', nargs='+', default=[], metavar='KEY VALUE', help='config overrides (DATASET.ROOT ...)')
    args = p.parse_args(argv)
    from ..config import ConfigError
    try:   # a bad exp folder, override or dataset root: one line, exit 2, before anything is written
        check_exp_dir(args.exp_dir)
        cfg, _ = load_exp(args.exp_dir, args.opts, build=False)
        meta = dataset_meta(cfg)
        if not args.augmented and args.split == 'val' and 'USE_GT_BBOX' in cfg.TEST:
            cfg = copy.deepcopy(cfg)
            cfg.TEST.USE_GT_BBOX = True   # the val GT, not the detections test.py crops
        dataset = build_dataset(cfg, args.split)
    except UsageError as e:
        p.error(str(e))
    except (ConfigError, FileNotFoundError, KeyError) as e:
        die('%s: error: %s' % (PROG, e.args[0] if isinstance(e, KeyError) and e.args else e))
    out = args.out or 'browse_%s' % args.split
    written = []
    if args.augmented:
        if hasattr(dataset, 'seed'):
            dataset.seed(args.seed)
        random.seed(args.seed)        # the whole-image pipeline draws from `random`
        for i in range(min(args.n, len(dataset))):
            written.append(save_png(osp.join(out, 'aug_%03d.png' % i), draw_sample(dataset[i], cfg, meta)))
    else:
        for image_id, image in draw_ground_truth(dataset, meta, args.n):
            written.append(save_png(osp.join(out, 'gt_%s.png' % image_id), image))
    print('wrote %d images to %s' % (len(written), out))
    return written


if __name__ == '__main__':
    main()
