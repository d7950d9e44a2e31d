"""The dataset part of every preset: where the files are and the keypoint metadata.

Pipelines add their own ``DATASET.TRAIN`` (augmentation) and colour keys on top of this block.
"""
import os.path as osp

from easydict import EasyDict as edict

from ..data.meta import get_dataset_meta

# Files below DATASET.ROOT: the official COCO 2017 layout, and the HRNet/mmpose MPII json layout.
_FILES = {
    'COCO': dict(TRAIN_IMAGES='images/train2017', TRAIN_ANN='annotations/person_keypoints_train2017.json',
                 VAL_IMAGES='images/val2017', VAL_ANN='annotations/person_keypoints_val2017.json'),
    'MPII': dict(TRAIN_IMAGES='images', TRAIN_ANN='annotations/train.json',
                 VAL_IMAGES='images', VAL_ANN='annotations/valid.json'),
}


def dataset_block(name, root_dir, pipeline):
    """``cfg.DATASET`` for ``name`` ('COCO' or 'MPII') read by ``pipeline``.

    ROOT defaults to ``<repo>/dataset/<NAME>``; KEYPOINT comes from :mod:`cvpack.data.meta`.
    """
    name = name.upper()
    meta = get_dataset_meta(name)
    d = edict(NAME=name, PIPELINE=pipeline, ROOT=osp.join(root_dir, 'dataset', name), **_FILES[name])
    d.KEYPOINT = edict(NUM=meta.num_keypoints, FLIP_PAIRS=[list(p) for p in meta.flip_pairs],
                       UPPER_BODY_IDS=list(meta.upper_body_ids), LOWER_BODY_IDS=list(meta.lower_body_ids),
                       LOAD_MIN_NUM=1)
    d.PIXEL_STD = 200
    return d
