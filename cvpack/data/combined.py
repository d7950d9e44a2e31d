"""Combined training on several COCO-style datasets, mapped onto the exp's keypoint set (``DATASET.COMBINE``).

``DATASET.COMBINE`` is a list of sources, each a dict::

    {'NAME': 'AIC', 'ROOT': 'dataset/aic_subset', 'IMAGES': 'images', 'ANN': 'annotations/test_aic.json',
     'WEIGHT': 1.0, 'MAP': None}

``NAME`` picks the source's metadata (:mod:`cvpack.data.meta`, or ``META_FILE`` for a user's), its annotation file
is read and validated against it, and every person's joints are moved onto the exp's keypoint set
(``DATASET.NAME``): target joint ``k`` takes source joint ``MAP[k]`` (-1 = not labelled there, visibility 0;
MAP may also be a ``{target keypoint name: source joint}`` dict: :mod:`.combine_spec`).
Without MAP, joints are matched by name (case and spaces ignored: AIC 'Right Shoulder' = COCO 'right_shoulder');
a source sharing no joint with the target is an error. The exp's own dataset is not added implicitly: list it.
Each source is checked when the config is resolved (keys, WEIGHT finite > 0, each annotation file once, MAP joints
valid on both sides, at least one keypoint covered) and its files when the dataset is built (:mod:`.combine_spec`).

Which source a training position draws is :class:`cvpack.data.samplers.WeightedSourceDraw` (weights ``WEIGHT``),
keyed by the engine sampler's position, so the mix is reproducible and resumes with the sampler's state.
"""
import copy
import logging
import os.path as osp

import numpy as np

from .coco import coco_gt_records
from .combine_spec import check_source_files, combine_sources, keypoint_mapping
from .meta_file import dataset_meta
from .samplers import SampleIndex, WeightedSourceDraw
from .topdown import TopDownDataset

__all__ = ['CombinedDataset', 'keypoint_mapping']

logger = logging.getLogger(__name__)


class CombinedDataset(TopDownDataset):
    """The exp's top-down training pipeline over the mapped records of every ``DATASET.COMBINE`` source.

    ``len()`` is the total number of records (one nominal pass). An index from the engine's sampler
    (a :class:`SampleIndex`) is replaced by the weighted draw of its key; a plain int index reads the records in
    concatenation order (tests, browsing).
    """

    def __init__(self, cfg, split):
        if split != 'train':
            raise ValueError('DATASET.COMBINE is for training; test on one dataset (DATASET.NAME / VAL_ANN)')
        sources = combine_sources(cfg, dataset_meta(cfg))    # checked again: a cfg built without merge_from_list
        if not sources:
            raise ValueError('DATASET.COMBINE is empty')
        check_source_files(sources)
        self.sources, records, sizes, weights = [], [], [], []
        for src in sources:
            recs = self._source_records(cfg, src)
            if not recs:
                raise ValueError('%s: %s has no usable person annotation'
                                 % (src['where'], osp.join(src['root'], src['ann'])))
            self.sources.append(dict(name=src['meta'].name, mapping=src['mapping'], offset=len(records),
                                     size=len(recs)))
            records += recs
            sizes.append(len(recs))
            weights.append(src['weight'])
        self.draw = WeightedSourceDraw(sizes, weights)
        logger.info('combined training: %s', ', '.join('%s %d records weight %g' % (s['name'], s['size'], w)
                                                       for s, w in zip(self.sources, weights)))
        super().__init__(cfg, split, records=records)

    def _source_records(self, cfg, src):
        d = cfg.DATASET
        h, w = (int(v) for v in cfg.INPUT_SHAPE)
        recs = coco_gt_records(osp.join(src['root'], src['ann']), osp.join(src['root'], src['images']), src['meta'],
                               cs_mode=d.PIPELINE, aspect_ratio=w / h, pixel_std=float(d.PIXEL_STD),
                               padding=d.BBOX_PADDING, load_min_num=d.KEYPOINT.LOAD_MIN_NUM)
        idx = np.asarray(src['mapping'])
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
