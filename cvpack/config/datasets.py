"""The dataset part of every preset: where the files are and the keypoint metadata.

Pipelines add their own ``DATASET.TRAIN`` (augmentation) and colour keys on top of this block.

Switching dataset from the command line needs only ``DATASET.*`` overrides: when ``DATASET.NAME`` or
``DATASET.META_FILE`` is overridden, :func:`refresh_dataset_keys` (called by ``merge_from_list``) re-derives
the keys that follow from the metadata (``DATASET.KEYPOINT.*``, ``MODEL.OUTPUT_NUM``) and, for a new name,
the default file layout and ROOT; keys given explicitly on the same command line are kept.
"""
import os.path as osp

from easydict import EasyDict as edict

from ..data.meta import get_dataset_meta

# Files below DATASET.ROOT: the official COCO 2017 layout, the HRNet/mmpose json layouts of the others
# (mmpose's docs/en/dataset_zoo/2d_body_keypoint.md). OCHuman has no train split: TRAIN_ANN is '' and the
# dataset refuses to train until DATASET.TRAIN_ANN names a file.
_FILES = {
    'COCO': dict(TRAIN_IMAGES='images/train2017', TRAIN_ANN='annotations/person_keypoints_train2017.json',
                 VAL_IMAGES='images/val2017', VAL_ANN='annotations/person_keypoints_val2017.json'),
    'MPII': dict(TRAIN_IMAGES='images', TRAIN_ANN='annotations/train.json',
                 VAL_IMAGES='images', VAL_ANN='annotations/valid.json'),
    'CROWDPOSE': dict(TRAIN_IMAGES='images', TRAIN_ANN='annotations/mmpose_crowdpose_trainval.json',
                      VAL_IMAGES='images', VAL_ANN='annotations/mmpose_crowdpose_test.json'),
    'OCHUMAN': dict(TRAIN_IMAGES='images', TRAIN_ANN='',
                    VAL_IMAGES='images', VAL_ANN='annotations/ochuman_coco_format_val_range_0.00_1.00.json'),
    'AIC': dict(TRAIN_IMAGES='ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902',
                TRAIN_ANN='annotations/aic_train.json',
                VAL_IMAGES='ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911',
                VAL_ANN='annotations/aic_val.json'),
    # PoseTrack18 file names already start with images/<split>/...
    'POSETRACK18': dict(TRAIN_IMAGES='', TRAIN_ANN='annotations/posetrack18_train.json',
                        VAL_IMAGES='', VAL_ANN='annotations/posetrack18_val.json'),
}
# The person boxes test.py uses on each dataset, as mmpose's configs: a detection file below DATASET.ROOT, or None
# for the annotated boxes (TEST.USE_GT_BBOX True: OCHuman and AIC have no public detections; so for a user's
# dataset). Set on a switch of DATASET.NAME / META_FILE unless TEST.DET_FILE / TEST.USE_GT_BBOX are given too:
# COCO's detection file kept its name under the new ROOT ("TEST.DET_FILE (.../crowdpose/det_json/
# COCO_val2017_detections_AP_H_56_person.json): file not found").
_TEST_BOXES = {'COCO': 'det_json/COCO_val2017_detections_AP_H_56_person.json',
               'CROWDPOSE': 'annotations/det_for_crowd_test_0.1_0.5.json',
               'POSETRACK18': 'annotations/posetrack18_val_human_detections.json'}
_USER_FILES = dict(TRAIN_IMAGES='images', TRAIN_ANN='annotations/train.json', VAL_IMAGES='images',
                   VAL_ANN='annotations/val.json')


def keypoint_block(meta, load_min_num=1):
    return edict(NUM=meta.num_keypoints, FLIP_PAIRS=[list(p) for p in meta.flip_pairs],
                 UPPER_BODY_IDS=list(meta.upper_body_ids), LOWER_BODY_IDS=list(meta.lower_body_ids),
                 LOAD_MIN_NUM=load_min_num)


def dataset_block(name, root_dir, pipeline):
    """``cfg.DATASET`` for ``name`` (a built-in dataset, :mod:`cvpack.data.meta`) read by ``pipeline``.

    ROOT defaults to ``<repo>/dataset/<NAME>``; KEYPOINT comes from :mod:`cvpack.data.meta`. META_FILE ('' = the
    built-in metadata of NAME) names a user's metadata file (:mod:`cvpack.data.meta_file`).
    """
    name = name.upper()
    meta = get_dataset_meta(name)
    d = edict(NAME=name, PIPELINE=pipeline, ROOT=osp.join(root_dir, 'dataset', name), META_FILE='',
              CLASS='',     # 'module:Class' of a project's dataset; '' = the core one of PIPELINE (data/build.py)
              COMBINE=[],   # combined training on several datasets: cvpack/data/combined.py
              IMAGE_CACHE='',   # a folder of decoded images, memory-mapped (cvpack/data/image_cache.py); '' = off
              **_FILES[name])
    d.KEYPOINT = keypoint_block(meta)
    d.PIXEL_STD = 200
    # box scale x padding at load time (MPII, and COCO's _box2cs in Simple Baselines): Megvii's crops are extended
    # later by their own ratios, so 1.0 there; 1.25 for the HRNet / Simple Baselines / CPN pipelines
    d.BBOX_PADDING = 1.0 if pipeline == 'megvii' else 1.25
    return d


def _load_meta(cfg):
    """The metadata behind ``cfg.DATASET`` (:func:`cvpack.data.meta_file.dataset_meta`); a bad DATASET.META_FILE
    (missing, unreadable, invalid) or an unknown DATASET.NAME is a ConfigError of one line naming the key and file."""
    from ..data.meta_file import dataset_meta
    from .schema import ConfigError
    path = cfg.DATASET.META_FILE
    try:
        return dataset_meta(cfg)
    except (OSError, ValueError, KeyError) as e:     # UnicodeDecodeError is a ValueError
        text = ' '.join(str(e.args[0] if len(e.args) == 1 else e).split())
        if path and path not in text:
            text = '%s: %s' % (path, text)
        raise ConfigError('config key %s: %s' % ('DATASET.META_FILE' if path else 'DATASET.NAME', text)) from None


def refresh_dataset_keys(cfg, old_name, old_meta_file, given):
    """After command-line overrides: if DATASET.NAME / META_FILE changed, re-derive what follows from them; in
    every case check DATASET.KEYPOINT.NUM against the metadata's keypoint count.

    ``given``: the keys overridden on the command line (they win). Raises ConfigError when the metadata cannot be
    loaded (naming the file), when a user metadata file names a built-in dataset, or when DATASET.KEYPOINT.NUM
    disagrees with the metadata.
    """
    d = cfg.get('DATASET')
    if not isinstance(d, dict) or 'NAME' not in d or 'KEYPOINT' not in d:
        return cfg     # a project's own dataset block (no built-in metadata behind it): nothing to re-derive
    meta = _load_meta(cfg)
    if d.NAME.upper() != str(old_name).upper() or d.META_FILE != old_meta_file:
        _rederive(cfg, meta, old_name, given)
    if d.KEYPOINT.get('NUM') != meta.num_keypoints:
        from .schema import ConfigError
        raise ConfigError('config key DATASET.KEYPOINT.NUM is %r but the %s metadata%s has %d keypoints'
                          % (d.KEYPOINT.get('NUM'), meta.name, ' (%s)' % d.META_FILE if d.META_FILE else '',
                             meta.num_keypoints))
    return cfg


def _rederive(cfg, meta, old_name, given):
    """The keys of a new DATASET.NAME / META_FILE: file layout and ROOT (another dataset), keypoint keys,
    MODEL.OUTPUT_NUM; keys in ``given`` (overridden on the command line) are kept."""
    d = cfg.DATASET
    d.NAME = meta.name
    if meta.name != str(old_name).upper():     # another dataset (by name, or a user file's own name)
        for key, value in _FILES.get(meta.name, _USER_FILES).items():
            if 'DATASET.' + key not in given:
                d[key] = value
        if 'DATASET.ROOT' not in given:
            d.ROOT = osp.join(osp.dirname(d.ROOT), meta.name)
        _rederive_test_boxes(cfg, meta.name, given)
    fresh = keypoint_block(meta, d.KEYPOINT.LOAD_MIN_NUM)
    for key, value in fresh.items():
        if 'DATASET.KEYPOINT.' + key not in given:
            d.KEYPOINT[key] = value
    if 'MODEL' in cfg and 'OUTPUT_NUM' in cfg.MODEL and 'MODEL.OUTPUT_NUM' not in given:
        cfg.MODEL.OUTPUT_NUM = meta.num_keypoints


def _rederive_test_boxes(cfg, name, given):
    """TEST.DET_FILE / TEST.USE_GT_BBOX of the dataset ``name`` (:data:`_TEST_BOXES`) for a top-down exp that tests
    on detections (its preset set a DET_FILE: not MPII's, not the whole-image GCPose exps); given keys are kept."""
    from ..data.build import TOP_DOWN_PIPELINES
    t = cfg.get('TEST')
    if not isinstance(t, dict) or not t.get('DET_FILE') or cfg.DATASET.get('PIPELINE') not in TOP_DOWN_PIPELINES:
        return
    det = _TEST_BOXES.get(name)
    if 'TEST.DET_FILE' not in given:
        t.DET_FILE = det or ''
    if det is None and 'TEST.USE_GT_BBOX' not in given and 'TEST.DET_FILE' not in given:
        t.USE_GT_BBOX = True
