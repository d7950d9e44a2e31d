"""Combined training on several COCO-style datasets, mapped onto the exp's keypoint set (``DATASET.COMBINE``).

``DATASET.COMBINE`` is a list of sources, each a dict::

    {'NAME': 'AIC', 'ROOT': 'dataset/aic_subset', 'IMAGES': 'images', 'ANN': 'annotations/test_aic.json',
     'WEIGHT': 1.0, 'MAP': None}

``NAME`` picks the source's metadata (:mod:`cvpack.data.meta`, or ``META_FILE`` for a user's), its annotation file
is read and validated against it, and every person's joints are moved onto the exp's keypoint set
(``DATASET.NAME``): target joint ``k`` takes source joint ``MAP[k]`` (-1 = not labelled there, visibility 0).
Without MAP, joints are matched by name (case and spaces ignored: AIC 'Right Shoulder' = COCO 'right_shoulder');
a source sharing no joint with the target is an error. The exp's own dataset is not added implicitly: list it.

Which source a training position draws is :class:`cvpack.data.samplers.WeightedSourceDraw` (weights ``WEIGHT``),
keyed by the engine sampler's position, so the mix is reproducible and resumes with the sampler's state.
"""
import copy
import logging
import os.path as osp

import numpy as np

from .coco import coco_gt_records
from .meta import get_dataset_meta
from .meta_file import dataset_meta, load_meta_file
from .samplers import SampleIndex, WeightedSourceDraw
from .topdown import TopDownDataset

__all__ = ['CombinedDataset', 'keypoint_mapping']

logger = logging.getLogger(__name__)
_KEYS = {'NAME', 'ROOT', 'IMAGES', 'ANN', 'WEIGHT', 'MAP', 'META_FILE'}


def _norm(name):
    return name.lower().replace(' ', '_').replace('-', '_')


def keypoint_mapping(source, target):
    """``map[k]`` = index of target joint ``k`` in ``source`` (matched by normalised name), -1 if absent."""
    index = {_norm(n): i for i, n in enumerate(source.keypoint_names)}
    return [index.get(_norm(n), -1) for n in target.keypoint_names]


def _check_source(src, n):
    where = 'DATASET.COMBINE[%d]' % n
    if not isinstance(src, dict):
        raise ValueError('%s must be a dict with NAME, ROOT, IMAGES, ANN (WEIGHT, MAP optional)' % where)
    missing = [k for k in ('NAME', 'ROOT', 'IMAGES', 'ANN') if k not in src]
    unknown = sorted(set(src) - _KEYS)
    if missing or unknown:
        raise ValueError('%s: missing %s, unknown %s' % (where, missing, unknown))
    return where


class CombinedDataset(TopDownDataset):
    """The exp's top-down training pipeline over the mapped records of every ``DATASET.COMBINE`` source.

    ``len()`` is the total number of records (one nominal pass). An index from the engine's sampler
    (a :class:`SampleIndex`) is replaced by the weighted draw of its key; a plain int index reads the records in
    concatenation order (tests, browsing).
    """

    def __init__(self, cfg, split):
        if split != 'train':
            raise ValueError('DATASET.COMBINE is for training; test on one dataset (DATASET.NAME / VAL_ANN)')
        target = dataset_meta(cfg)
        self.sources, records, sizes, weights = [], [], [], []
        for n, src in enumerate(cfg.DATASET.COMBINE):
            where = _check_source(src, n)
            meta = load_meta_file(src['META_FILE']) if src.get('META_FILE') else get_dataset_meta(src['NAME'])
            mapping = src.get('MAP') or keypoint_mapping(meta, target)
            if len(mapping) != target.num_keypoints or not all(-1 <= int(m) < meta.num_keypoints for m in mapping):
                raise ValueError('%s: MAP must list, for each of the %d %s keypoints, a %s joint index or -1; got %s'
                                 % (where, target.num_keypoints, target.name, meta.name, mapping))
            if all(int(m) < 0 for m in mapping):
                raise ValueError('%s: %s shares no keypoint with %s; give MAP' % (where, meta.name, target.name))
            recs = self._source_records(cfg, src, meta, mapping)
            if not recs:
                raise ValueError('%s: %s has no usable person annotation' % (where, osp.join(src['ROOT'], src['ANN'])))
            self.sources.append(dict(name=meta.name, mapping=[int(m) for m in mapping], offset=len(records),
                                     size=len(recs)))
            records += recs
            sizes.append(len(recs))
            weights.append(float(src.get('WEIGHT', 1.0)))
        if not self.sources:
            raise ValueError('DATASET.COMBINE is empty')
        self.draw = WeightedSourceDraw(sizes, weights)
        logger.info('combined training: %s', ', '.join('%s %d records weight %g' % (s['name'], s['size'], w)
                                                       for s, w in zip(self.sources, weights)))
        super().__init__(cfg, split, records=records)

    def _source_records(self, cfg, src, meta, mapping):
        d = cfg.DATASET
        h, w = (int(v) for v in cfg.INPUT_SHAPE)
        recs = coco_gt_records(osp.join(src['ROOT'], src['ANN']), osp.join(src['ROOT'], src['IMAGES']), meta,
                               cs_mode=d.PIPELINE, aspect_ratio=w / h, pixel_std=float(d.PIXEL_STD),
                               padding=d.BBOX_PADDING, load_min_num=d.KEYPOINT.LOAD_MIN_NUM)
        idx = np.asarray(mapping)
        out = []
        for rec in recs:
            joints = np.zeros((len(idx), 3), np.float32)
            joints[idx >= 0] = rec['joints'][idx[idx >= 0]]
            if np.sum(joints[:, 2] > 0) >= d.KEYPOINT.LOAD_MIN_NUM:   # still labelled after the mapping
                out.append(dict(copy.copy(rec), joints=joints))
        return out

    def resolve(self, index):
        """Engine index -> (record index in the concatenation, source id)."""
        key = getattr(index, 'key', None)
        if key is None:
            i = int(index)
            return i, max(n for n, s in enumerate(self.sources) if s['offset'] <= i)
        d, i = self.draw(key)
        return self.sources[d]['offset'] + i, d

    def __getitem__(self, index):
        i, _ = self.resolve(index)
        key = getattr(index, 'key', None)
        # the augmentations stay keyed by the position (the same key, another record)
        return super().__getitem__(SampleIndex(i, key) if key is not None else i)
