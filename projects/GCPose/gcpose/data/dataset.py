"""Whole-image COCO person dataset for GCPose / Keypoint R-CNN (pipeline 'detection').

Sample dict (one image):
- ``image``: float32 (3, h, w) resized and normalised (RGB or BGR per ``DATASET.COLOR_RGB``), not padded;
- ``image_size``: (h, w) of that tensor; ``scale``: (sx, sy) resized / original pixels;
- ``gt_boxes``: float32 (G, 4) xyxy and ``gt_keypoints``: float32 (G, K, 3) (x, y continuous input
  pixels, v), training only (empty at val);
- ``image_id`` int (str when the file's ids are), ``orig_size`` (H, W).
The engine's ``cvpack.data.collate`` keeps images of different sizes as a list; the model zero-pads them to a
multiple of ``INPUT.SIZE_DIVISIBILITY`` (Detectron2 pads inside the model too).
"""
import os.path as osp

import numpy as np
import torch
from torch.utils.data import Dataset

from cvpack.data.image_cache import image_reader
from cvpack.data.meta import get_dataset_meta
from cvpack.data.samplers import sample_rng
from cvpack.data.validate import config_file
from .records import load_person_records
from .transforms import drop_outside_keypoints, hflip_instances, resize_instances


class DetectionDataset(Dataset):
    """COCO person images with boxes and keypoints; train: random short side + flip, val: short side 800."""

    def __init__(self, cfg, split, records=None):
        if split not in ('train', 'val'):
            raise ValueError("split must be 'train' or 'val', got %r" % (split,))
        d = cfg.DATASET
        self.train = split == 'train'
        images = d.TRAIN_IMAGES if self.train else d.VAL_IMAGES
        ann = d.TRAIN_ANN if self.train else d.VAL_ANN
        self.ann_file = osp.join(d.ROOT, ann)
        meta = get_dataset_meta(d.NAME)
        # records given: images at inference time (``cvpack.apis``), see :meth:`image_record`
        self.records = records if records is not None else load_person_records(
            config_file(d.ROOT, ann, 'DATASET.TRAIN_ANN' if self.train else 'DATASET.VAL_ANN'),
            osp.join(d.ROOT, images), self.train, d.MIN_KEYPOINTS_PER_IMAGE, meta,
            max_images=0 if self.train else int(cfg.TEST.MAX_IMAGES))
        self.num_keypoints = meta.num_keypoints
        self.flip_perm = meta.flip_permutation()
        i = cfg.INPUT
        self.sizes = list(i.MIN_SIZE_TRAIN) if self.train else [i.MIN_SIZE_TEST]
        self.max_size = i.MAX_SIZE_TRAIN if self.train else i.MAX_SIZE_TEST
        self.prob_flip = i.PROB_FLIP if self.train else 0.0
        self.rgb = d.COLOR_RGB
        # read_image, or through decoded images on local disk (DATASET.IMAGE_CACHE, cvpack/data/image_cache.py)
        self.read_image = image_reader(d.IMAGE_CACHE)
        self.mean = np.asarray(i.PIXEL_MEAN, dtype=np.float32)
        self.std = np.asarray(i.PIXEL_STD, dtype=np.float32)

    def __len__(self):
        return len(self.records)

    def aspect_ratio_flags(self):
        """1 for landscape (w > h) images, 0 otherwise (Detectron2 aspect-ratio grouping)."""
        return [int(r['width'] > r['height']) for r in self.records]

    def image_record(self, image, image_id, name=None):
        """Val record of a decoded image (H, W, 3) uint8 in this dataset's colour order (``DATASET.COLOR_RGB``),
        without annotations: the sample is resized and normalised as a val image of the annotation file."""
        h, w = image.shape[:2]
        return {'file': name or '<array>', 'image': image, 'image_id': image_id, 'height': h, 'width': w,
                'boxes': np.zeros((0, 4), np.float32), 'keypoints': np.zeros((0, self.num_keypoints, 3), np.float32)}

    def _read(self, rec):
        if rec.get('image') is not None:
            return rec['image']
        # the repo's reader: EXIF orientation ignored (annotations are in stored pixels), errors name file + record
        img = self.read_image(rec['file'], self.rgb, 'image_id %s of %s' % (rec['image_id'], self.ann_file))
        if img.shape[:2] != (rec['height'], rec['width']):
            raise ValueError('%s: image %s is %s, annotation says %s' % (self.ann_file, rec['file'], img.shape[:2],
                                                                         (rec['height'], rec['width'])))
        return img

    def __getitem__(self, idx):
        rec = self.records[idx]
        img = self._read(rec)
        # the sample's own RNG when the training sampler keyed the index (same draws for any worker count and
        # after a resume, cvpack.data.samplers); else numpy's global one (seeded per DataLoader worker)
        rng = sample_rng(idx, np.random)
        short = self.sizes[rng.randint(len(self.sizes))] if self.train else self.sizes[0]
        img, boxes, kps, scale = resize_instances(img, rec['boxes'], rec['keypoints'], short, self.max_size)
        if self.train and rng.rand() < self.prob_flip:
            img, boxes, kps = hflip_instances(img, boxes, kps, self.flip_perm)
        h, w = img.shape[:2]
        sample = {'image_id': rec['image_id'], 'orig_size': (rec['height'], rec['width']),
                  'image_size': (h, w), 'scale': scale}
        if self.train:
            # Detectron2: transformed and clipped in float64, float32 Boxes / Keypoints, then boxes of sides
            # <= 1e-5 dropped (filter_empty_instances), docs/reference/defects.md F#23
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
            gt_boxes = torch.from_numpy(boxes.astype(np.float32))
            keep = ((gt_boxes[:, 2] - gt_boxes[:, 0]) > 1e-5) & ((gt_boxes[:, 3] - gt_boxes[:, 1]) > 1e-5)
            sample['gt_boxes'] = gt_boxes[keep]
            kps = drop_outside_keypoints(kps[keep.numpy()], (h, w))
            sample['gt_keypoints'] = torch.from_numpy(kps.astype(np.float32))
        img = (img.astype(np.float32) - self.mean) / self.std
        sample['image'] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return sample
