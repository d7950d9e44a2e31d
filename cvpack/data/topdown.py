"""Top-down person-crop datasets: the 'megvii' (RSN/MSPN) and 'simple_baselines' (HSRNet) pipelines.

Sample contract (docs/DESIGN.md "Data samples"):
  train: ``image`` float32 (3, H, W) normalised; ``target`` float32 megvii (L, K, h, w) peak 255 /
         simple_baselines (K, h, w) peak 1; ``target_weight`` float32 (K,) (megvii 0/1/2, simple_baselines 0/1).
  val:   ``image``; ``center``, ``scale`` float32 (2,) tensors (crop = scale * PIXEL_STD px around center);
         ``score`` float; ``image_id``; ``bbox`` float32 (4,) xywh tensor; ``index`` int.
Randomness: a training sample drawn by the engine's sampler has its own RNG, :func:`cvpack.data.samplers.sample_rng`
of its key (seed, pass, position), so its augmentations do not depend on the DataLoader worker, the number of
workers, prefetching or a resume (docs/ENGINE.md "Data order"). A plain int index (direct ``ds[i]``, tests)
draws from a numpy ``RandomState`` per process instead, seeded lazily from ``torch.initial_seed()`` (distinct
per DataLoader worker, docs/reference/defects.md R#25) or explicitly by :meth:`TopDownDataset.seed`.
"""
import copy
import os
import os.path as osp

import cv2
import numpy as np
import torch

from ..codecs import build_codec
from . import transforms as T
from .coco import box_record, coco_det_records, coco_gt_records
from .image_cache import image_reader
from .meta import flip_permutation
from .meta_file import dataset_meta
from .mpii import mpii_records
from .samplers import sample_rng
from .validate import config_file

__all__ = ['TopDownDataset', 'normalize_lut']


def normalize_lut(means, stds):
    """(1, 256, 3) float32 table: ``(v / 255 - mean_c) / std_c`` computed as ToTensor + Normalize do (torch
    float32 ``div(255)``, ``sub``, ``div``), so a table lookup gives the same bits as the originals."""
    v = torch.arange(256, dtype=torch.uint8).float().div(255)[:, None].repeat(1, 3)
    v = v.sub(torch.tensor(means, dtype=torch.float32)).div(torch.tensor(stds, dtype=torch.float32))
    return np.ascontiguousarray(v.numpy().reshape(1, 256, 3))   # the shape cv2.LUT wants for 3 channels


class TopDownDataset(torch.utils.data.Dataset):
    """Person crops for ``cfg.DATASET.PIPELINE`` in ('megvii', 'simple_baselines'), split 'train' or 'val'."""

    PIPELINES = ('megvii', 'simple_baselines')

    def __init__(self, cfg, split, records=None):
        if split not in ('train', 'val'):
            raise ValueError("split must be 'train' or 'val', got %r" % (split,))
        self.pipeline = cfg.DATASET.PIPELINE
        if self.pipeline not in self.PIPELINES:
            raise ValueError('TopDownDataset handles pipelines %s, not %r' % (self.PIPELINES, self.pipeline))
        self.cfg, self.split, self.train = cfg, split, split == 'train'
        self.meta = dataset_meta(cfg)   # built-in or DATASET.META_FILE
        self.input_hw = tuple(int(v) for v in cfg.INPUT_SHAPE)
        self.output_hw = tuple(int(v) for v in cfg.OUTPUT_SHAPE)
        self.w_h_ratio = self.input_hw[1] / self.input_hw[0]
        self.pixel_std = float(cfg.DATASET.PIXEL_STD)
        self.flip_pairs = [tuple(p) for p in cfg.DATASET.KEYPOINT.FLIP_PAIRS]
        try:   # checked here, not at the first flipped sample
            flip_permutation(self.meta.num_keypoints, self.flip_pairs)
        except ValueError as e:
            raise ValueError('DATASET.KEYPOINT.FLIP_PAIRS %s: %s' % (cfg.DATASET.KEYPOINT.FLIP_PAIRS, e)) from None
        self.rgb = bool(cfg.DATASET.COLOR_RGB)
        # read_image, or through decoded images on local disk (DATASET.IMAGE_CACHE, cvpack/data/image_cache.py)
        self.read_image = image_reader(cfg.DATASET.IMAGE_CACHE)
        self.lut = normalize_lut(cfg.INPUT.MEANS, cfg.INPUT.STDS)
        self.plane_luts = [np.ascontiguousarray(self.lut[:, :, c]) for c in range(3)]   # (1, 256) per channel
        self.codec = build_codec(cfg)   # target encoder (cfg.CODEC); checks TEST.DECODER against it early
        if self.pipeline == 'megvii' and cfg.DATASET.TRAIN.HALF_BODY_DRAW not in ('megvii', 'uniform'):
            raise ValueError("DATASET.TRAIN.HALF_BODY_DRAW must be 'megvii' or 'uniform', got %r"
                             % (cfg.DATASET.TRAIN.HALF_BODY_DRAW,))
        self.det_stats = {}        # detection records: counts of skipped detections (coco_det_records)
        self.records = self.load_records() if records is None else records
        self._rng, self._rng_pid = None, None

    # ---------------------------------------------------------------- records
    def load_records(self):
        d, t = self.cfg.DATASET, self.cfg.TEST
        root = d.ROOT
        images = osp.join(root, d.TRAIN_IMAGES if self.train else d.VAL_IMAGES)
        if not (d.TRAIN_ANN if self.train else d.VAL_ANN):
            raise ValueError('%s has no %s split: set DATASET.%s to an annotation file'
                             % (self.meta.name, self.split, 'TRAIN_ANN' if self.train else 'VAL_ANN'))
        ann = config_file(root, d.TRAIN_ANN if self.train else d.VAL_ANN,
                          'DATASET.TRAIN_ANN' if self.train else 'DATASET.VAL_ANN')
        if self.meta.name == 'MPII':
            pad = d.BBOX_PADDING
            return mpii_records(ann, images, self.meta, scale_padding=pad)
        kw = dict(cs_mode=self.pipeline, aspect_ratio=self.w_h_ratio, pixel_std=self.pixel_std,
                  padding=d.BBOX_PADDING)
        if self.train or t.USE_GT_BBOX:
            return coco_gt_records(ann, images, self.meta, load_min_num=d.KEYPOINT.LOAD_MIN_NUM, **kw)
        return coco_det_records(config_file(root, t.DET_FILE, 'TEST.DET_FILE'), ann, images, self.meta,
                                score_thresh=t.DET_SCORE_THRESH, stats=self.det_stats, **kw)

    def __len__(self):
        return len(self.records)

    def box_record(self, box, score, image_id, image=None, image_path=None):
        """Val record of a person box (xywh image pixels) given at inference time (``cvpack.apis``), made as
        the detection-file records are (:func:`cvpack.data.coco.box_record`), so the crop is test.py's.
        ``image``: decoded (H, W, 3) uint8 in this dataset's colour order (``DATASET.COLOR_RGB``)."""
        d = self.cfg.DATASET
        return box_record(box, score, image_id, self.meta.num_keypoints, image_path, self.pipeline, self.w_h_ratio,
                          self.pixel_std, d.BBOX_PADDING, image=image)

    def read_record_image(self, rec, record):
        """The record's image in this dataset's colour order: ``rec['image']`` when the record carries the
        decoded image (inference on arrays), else read from ``rec['image_path']`` (errors name the record)."""
        if rec.get('image') is not None:
            return rec['image']
        return self.read_image(rec['image_path'], rgb=self.rgb, record=record)

    # ---------------------------------------------------------------- randomness
    def seed(self, seed):
        """Seed this process's augmentation RNG explicitly (e.g. from a worker_init_fn)."""
        self._rng, self._rng_pid = np.random.RandomState(seed % 2 ** 32), os.getpid()

    @property
    def rng(self):
        # re-seed in each new process: forked workers must not replay the parent's stream (docs/reference/defects.md
        # R#25)
        if self._rng is None or self._rng_pid != os.getpid():
            self.seed(torch.initial_seed())
        return self._rng

    def rng_for(self, index):
        """The augmentation RNG of sample ``index``: its own when the index carries a key (the training
        sampler's :class:`~cvpack.data.samplers.SampleIndex`), else this process's :attr:`rng`."""
        rng = sample_rng(index)
        return self.rng if rng is None else rng

    # ---------------------------------------------------------------- sample
    def __getitem__(self, index):
        """Sample ``index`` as a dict (module docstring): train ``image`` (3, H, W), ``target``, ``target_weight``
        (K,); val ``image``, ``center``/``scale`` (2,) image pixels / pixel_std units, ``score``, ``image_id``,
        ``bbox`` (4,) xywh image pixels, ``index``. Raises ImageReadError naming the file and the record."""
        rec = self.records[index]
        src = _Source(self, rec, '%s #%d (ann id %s)' % (self.split, index, rec.get('ann_id')))
        if self.pipeline == 'megvii':
            return self._megvii(rec, src, index)
        return self._simple_baselines(rec, src, index)

    def _to_tensor(self, crop):
        """uint8 (H, W, 3) -> normalised float32 (3, H, W) via the exact lookup table: ``cv2.split`` into planes,
        one single-channel ``cv2.LUT`` per plane written straight into its row of the (3, H, W) array (half the
        time of a 3-channel LUT followed by a transposing copy; the same values)."""
        out = np.empty((3,) + crop.shape[:2], np.float32)
        for c, plane in enumerate(cv2.split(crop)):
            view = out[c]
            if cv2.LUT(plane, self.plane_luts[c], dst=view) is not view:   # OpenCV reallocated dst
                raise RuntimeError('cv2.LUT did not write into its (%d, %d) float32 destination' % crop.shape[:2])
        return torch.from_numpy(out)

    def _val_sample(self, crop, center, scale, rec, index):
        return dict(image=self._to_tensor(crop), center=torch.from_numpy(np.asarray(center, np.float32)),
                    scale=torch.from_numpy(np.asarray(scale, np.float32)), score=float(rec['score']),
                    image_id=rec['image_id'], bbox=torch.from_numpy(np.asarray(rec['bbox'], np.float32)),
                    index=index)

    def _megvii(self, rec, src, index):
        """``docs/reference/rsn_mspn.md`` §3.4, steps 1-8, in the original order."""
        tr = self.cfg.DATASET.TRAIN
        joints, vis = rec['joints'][:, :2].astype(np.float64), rec['joints'][:, 2].copy()
        center, scale = rec['center'].copy(), rec['scale'].copy()
        if not self.train:
            scale = T.extend_scale(scale, self.cfg.TEST.X_EXTENTION, self.cfg.TEST.Y_EXTENTION)
            scale = T.fit_aspect(scale, self.w_h_ratio)
            crop, _ = src.crop(center, scale, 0, False)
            return self._val_sample(crop, center, scale, rec, index)
        rng = self.rng_for(index)
        rx, ry = (rng.rand(), rng.rand()) if tr.RANDOM_EXTENTION else (1.0, 1.0)
        scale = T.extend_scale(scale, tr.X_EXTENTION, tr.Y_EXTENTION, tr.BASIC_EXTENTION, rx, ry)
        scale = T.fit_aspect(scale, self.w_h_ratio)
        if np.sum(vis > 0) > tr.NUM_KEYPOINTS_HALF_BODY and rng.rand() < tr.PROB_HALF_BODY:
            # 'megvii': randn() < 0.5 picks the upper body ~69 % of the time (docs/reference/defects.md R#15);
            # 'uniform': 50 %
            draw = rng.randn() if tr.HALF_BODY_DRAW == 'megvii' else rng.rand()
            c, s = T.half_body_box(joints, vis, self.cfg.DATASET.KEYPOINT.UPPER_BODY_IDS, draw < 0.5,
                                   rng.rand(), rng.rand(), tr.X_EXTENTION_HALF_BODY, tr.Y_EXTENTION_HALF_BODY,
                                   self.w_h_ratio, self.pixel_std)
            if c is not None:
                center, scale = c, s
        scale = scale * (tr.SCALE_SHRINK_RATIO * rng.uniform(1 + tr.SCALE_FACTOR_LOW, 1 + tr.SCALE_FACTOR_HIGH))
        rot = rng.uniform(-tr.ROTATION_FACTOR, tr.ROTATION_FACTOR) if rng.rand() <= tr.PROB_ROTATION else 0
        flip = rng.rand() <= tr.PROB_FLIP
        if flip:
            joints, vis = T.flip_joints(joints, vis, src.width, self.flip_pairs)
            center = T.flip_center_x(center, src.width)
        crop, trans = src.crop(center, scale, rot, flip)
        # step 6: joints with v > 0 are moved into the crop; those landing outside it become invalid
        joints[vis > 0] = T.affine_points(joints[vis > 0], trans)
        if tr.INTEGER_JOINTS:   # the original's int64 joints truncate toward zero (docs/reference/defects.md F#2)
            joints = np.trunc(joints)
        h, w = self.input_hw
        out = (joints[:, 0] < 0) | (joints[:, 0] > w - 1) | (joints[:, 1] < 0) | (joints[:, 1] > h - 1)
        vis = np.where((vis > 0) & out, 0, vis).astype(np.float32)
        enc = self.codec.encode(joints, vis)
        return dict(image=self._to_tensor(crop), target=torch.from_numpy(enc['heatmaps']),
                    target_weight=torch.from_numpy(enc['keypoint_weights']))

    def _simple_baselines(self, rec, src, index):
        """Simple Baselines ``JointsDataset.__getitem__`` (``docs/reference/mlpe_hsrnet_gcpose.md`` §2.6)."""
        center, scale = rec['center'].copy(), rec['scale'].copy()
        if not self.train:
            crop, _ = src.crop(center, scale, 0, False)
            return self._val_sample(crop, center, scale, rec, index)
        tr, rng = self.cfg.DATASET.TRAIN, self.rng_for(index)
        joints = rec['joints'][:, :2].astype(np.float64)
        vis = np.minimum(rec['joints'][:, 2], 1).astype(np.float32)
        sf, rf = tr.SCALE_FACTOR, tr.ROTATION_FACTOR
        # float32 x float32, as the original under NumPy 1 (a float32 array times np.clip's float64 scalar stayed
        # float32); NumPy 2 promotes that product to float64, a scale 1 ulp off (docs/reference/defects.md F#18)
        scale = scale * np.float32(np.clip(rng.randn() * sf + 1, 1 - sf, 1 + sf))
        rot = np.clip(rng.randn() * rf, -rf * 2, rf * 2) if rng.rand() <= tr.PROB_ROTATION else 0
        flip = tr.FLIP and rng.rand() <= tr.PROB_FLIP
        if flip:
            joints, vis = T.flip_joints(joints, vis, src.width, self.flip_pairs)
            center = T.flip_center_x(center, src.width)
        crop, trans = src.crop(center, scale, rot, flip)
        joints[vis > 0] = T.affine_points(joints[vis > 0], trans)
        enc = self.codec.encode(joints, vis)
        return dict(image=self._to_tensor(crop), target=torch.from_numpy(enc['heatmaps']),
                    target_weight=torch.from_numpy(enc['keypoint_weights']))

    def subset(self, indices):
        """A dataset over ``records[indices]`` sharing this one's config (tests, quick runs)."""
        return type(self)(self.cfg, self.split, records=[copy.deepcopy(self.records[i]) for i in indices])


class _Source:
    """The image of one record, decoded once on first use; checks its width against the annotation."""

    def __init__(self, ds, rec, record):
        self.ds, self.rec, self.record, self.img = ds, rec, record, None

    def full(self):
        if self.img is None:
            self.img = self.ds.read_record_image(self.rec, self.record)
            w = self.rec.get('width')
            if w is not None and w != self.img.shape[1]:
                raise ValueError('%s (record %s) is %d px wide, its annotation says %d'
                                 % (self.rec['image_path'], self.record, self.img.shape[1], w))
        return self.img

    @property
    def width(self):
        return self.full().shape[1]

    def crop(self, center, scale, rot, flip):
        """Warp the box (center, scale * pixel_std, rot) of the (mirrored if ``flip``) image to the input size.

        ``center`` is in the frame of the mirrored image when ``flip`` (as the originals). The mirror is
        ``cv2.flip`` (the same pixels as the originals' ``img[:, ::-1]``, without its slow strided copy), then one
        ``cv2.warpAffine`` (bilinear, constant 0 border, docs/reference/rsn_mspn.md §3.4 step 5).
        Returns (uint8 crop (H, W, 3), the 2x3 image -> input affine, also used for the joints).
        """
        out_wh = (self.ds.input_hw[1], self.ds.input_hw[0])
        trans = T.get_affine_transform(center, scale * self.ds.pixel_std, rot, out_wh)
        img = cv2.flip(self.full(), 1) if flip else self.full()
        return cv2.warpAffine(img, trans, out_wh, flags=cv2.INTER_LINEAR), trans
