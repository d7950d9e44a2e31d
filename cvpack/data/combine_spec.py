"""Checks of ``DATASET.COMBINE`` (combined training, :mod:`cvpack.data.combined`) when the config is resolved.

:func:`combine_sources` runs in :func:`cvpack.config.merge_from_list`, so a bad source stops ``train.py`` at
start-up (exit 2, one line naming ``DATASET.COMBINE[i]`` and the key) before any annotation file is read;
:func:`check_source_files` runs when the dataset is built and names every missing image folder or annotation
file with the source index and key. No torch or image code here: the config resolves without it.

``MAP`` (optional; default: joints matched by name, case and separators ignored) is either

* a list with one entry per keypoint of the exp (``DATASET.NAME``): the source joint (index or name) that
  target joint ``k`` takes, or ``-1`` / ``None`` when the source does not label it; or
* a dict ``{target keypoint name: source joint}`` (the source joint an index or a name; the keys are names, as
  the config's dicts take string keys only); target joints not listed are unlabelled.
"""
import math
import os.path as osp

from ..config.schema import ConfigError
from .meta import get_dataset_meta
from .meta_file import load_meta_file, norm_name

__all__ = ['combine_sources', 'check_source_files', 'keypoint_mapping']

_REQUIRED = ('NAME', 'ROOT', 'IMAGES', 'ANN')
_KEYS = set(_REQUIRED) | {'WEIGHT', 'MAP', 'META_FILE'}


def keypoint_mapping(source, target):
    """``map[k]`` = index of target joint ``k`` in ``source`` (matched by normalised name), -1 if absent."""
    index = {norm_name(n): i for i, n in enumerate(source.keypoint_names)}
    return [index.get(norm_name(n), -1) for n in target.keypoint_names]


def _joint(value, where, meta):
    """The index of joint ``value`` (an index or a keypoint name) of ``meta``; ConfigError naming ``where``."""
    names = meta.keypoint_names
    if isinstance(value, str):
        index = {norm_name(n): i for i, n in enumerate(names)}
        if norm_name(value) not in index:
            raise ConfigError('%s: %r is not a %s keypoint (%s)' % (where, value, meta.name, ', '.join(names)))
        return index[norm_name(value)]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError('%s: %r is neither a %s joint index nor a keypoint name' % (where, value, meta.name))
    if not 0 <= value < len(names):
        raise ConfigError('%s: joint %d is out of range: %s has %d keypoints (0..%d)'
                          % (where, value, meta.name, len(names), len(names) - 1))
    return value


def _mapping(value, where, meta, target):
    """The resolved MAP: ``out[k]`` = source joint of target joint ``k``, -1 when unlabelled."""
    if value is None:
        return keypoint_mapping(meta, target)
    if isinstance(value, dict):
        out = [-1] * target.num_keypoints
        for key, src in value.items():
            at = '%s.MAP[%r]' % (where, key)
            k = _joint(key, at + ' (%s side)' % target.name, target)
            if out[k] != -1:
                raise ConfigError('%s: target joint %d (%s) is mapped twice' % (at, k, target.keypoint_names[k]))
            out[k] = -1 if src is None or src == -1 else _joint(src, at, meta)
        return out
    if not isinstance(value, (list, tuple)):
        raise ConfigError('%s.MAP must be a list or a dict, got %s' % (where, type(value).__name__))
    if len(value) != target.num_keypoints:
        raise ConfigError('%s.MAP has %d entries, expected %d: for each %s keypoint, a %s joint (index or name) '
                          'or -1' % (where, len(value), target.num_keypoints, target.name, meta.name))
    return [-1 if v is None or (v == -1 and not isinstance(v, bool)) else _joint(v, '%s.MAP[%d]' % (where, k), meta)
            for k, v in enumerate(value)]


def _weight(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError('%s.WEIGHT = %r must be a finite number > 0' % (where, value))
    return float(value)


def _strings(src, where):
    """NAME, ROOT, ANN are non-empty strings; IMAGES and META_FILE strings ('' allowed: PoseTrack18's file
    names start with the image folder already)."""
    for key in _REQUIRED + ('META_FILE',):
        if key not in src:
            continue
        value = src[key]
        if not isinstance(value, str) or (key in ('NAME', 'ROOT', 'ANN') and not value.strip()):
            raise ConfigError('%s.%s = %r must be a%s string' % (where, key, value,
                                                                 ' non-empty' if key != 'IMAGES' else ''))


def _source_meta(src, where):
    try:
        return load_meta_file(src['META_FILE']) if src.get('META_FILE') else get_dataset_meta(src['NAME'])
    except (ValueError, OSError, KeyError) as e:
        key = 'META_FILE' if src.get('META_FILE') else 'NAME'
        raise ConfigError('%s.%s: %s' % (where, key, e.args[0] if e.args else e)) from None


def _source(src, n, target):
    where = 'DATASET.COMBINE[%d]' % n
    if not isinstance(src, dict):
        raise ConfigError('%s must be a dict with NAME, ROOT, IMAGES, ANN (WEIGHT, MAP, META_FILE optional), got %r'
                          % (where, src))
    missing, unknown = [k for k in _REQUIRED if k not in src], sorted(set(src) - _KEYS, key=str)
    if missing or unknown:
        raise ConfigError('%s: %s%s%s (keys: %s)' % (
            where, 'missing %s' % ', '.join(missing) if missing else '', '; ' if missing and unknown else '',
            'unknown %s' % ', '.join(map(repr, unknown)) if unknown else '', ', '.join(sorted(_KEYS))))
    _strings(src, where)
    meta = _source_meta(src, where)
    mapping = _mapping(src.get('MAP'), where, meta, target)
    if all(m < 0 for m in mapping):
        raise ConfigError('%s: %s covers 0 of the %d %s keypoints; give MAP' % (
            where, meta.name, target.num_keypoints, target.name))
    weight = _weight(src.get('WEIGHT', 1.0), where)
    return dict(where=where, name=src['NAME'], meta=meta, mapping=mapping, weight=weight, root=src['ROOT'],
                images=src['IMAGES'], ann=src['ANN'])


def combine_sources(cfg, target=None):
    """The checked sources of ``cfg.DATASET.COMBINE`` (``[]`` when unset): dicts with where, name, meta,
    mapping (resolved MAP, -1 = unlabelled), weight, root, images, ann. ``target``: the exp's metadata
    (default :func:`cvpack.data.meta_file.dataset_meta` of ``cfg``). Raises ConfigError naming the source."""
    combine = cfg.get('DATASET', {}).get('COMBINE') if isinstance(cfg.get('DATASET'), dict) else None
    if not combine:
        return []
    if not isinstance(combine, (list, tuple)):
        raise ConfigError('DATASET.COMBINE must be a list of source dicts, got %s' % type(combine).__name__)
    if target is None:
        from .meta_file import dataset_meta
        target = dataset_meta(cfg)
    sources = [_source(src, n, target) for n, src in enumerate(combine)]
    first = {}
    for n, s in enumerate(sources):
        # Two entries of one annotation file: a copy-paste slip, or a weight split that WEIGHT does. Two files
        # of one dataset (NAME picks the keypoint set: COCO train2017 + val2017, or a COCO-format set of one's
        # own) are two sources.
        key = osp.normcase(osp.abspath(osp.join(s['root'], s['ann'])))
        if key in first:
            raise ConfigError('%s.ANN = %r (in ROOT %r) repeats the annotation file of DATASET.COMBINE[%d]; list '
                              'each file once (WEIGHT sets its share)' % (s['where'], s['ann'], s['root'], first[key]))
        first[key] = n
    return sources


def check_source_files(sources):
    """Every source's image folder and annotation file exist; one FileNotFoundError listing each missing one
    with its source and key (checked before any annotation file is read: no minutes lost on the others)."""
    problems = []
    for s in sources:
        ann, images = osp.join(s['root'], s['ann']), osp.join(s['root'], s['images'])
        if not osp.isfile(ann):
            problems.append('%s.ANN: annotation file %s %s' % (s['where'], ann, 'is not a file' if osp.exists(ann)
                                                                    else 'does not exist'))
        if not osp.isdir(images):
            problems.append('%s.IMAGES: image folder %s %s' % (s['where'], images, 'is not a folder'
                                                               if osp.exists(images) else 'does not exist'))
    if problems:
        raise FileNotFoundError('; '.join(problems))
