"""Dataset metadata from a small file a user writes (``DATASET.META_FILE``), and its check against an annotation file.

JSON (preferred)::

    {"name": "MYPOSE", "keypoint_names": ["head", "left_hand", "right_hand"], "flip_pairs": [[1, 2]],
     "skeleton": [[0, 1], [0, 2]], "sigmas": [0.079, 0.062, 0.062],
     "upper_body_ids": [0, 1, 2], "lower_body_ids": []}

or a ``.py`` file holding one literal assignment ``META = {...}`` with the same keys. The Python file is *parsed*
(``ast.literal_eval``), never imported or executed: a file that needs to run code to build the dict is refused.
Optional keys: ``skeleton_colors`` / ``keypoint_colors`` (BGR; default one grey per link / joint), ``extra``.
Every error names the file and the field.
"""
import ast
import json
import math
import os.path as osp

from .meta import DatasetMeta, get_dataset_meta, register_meta

__all__ = ['load_meta_file', 'meta_from_dict', 'check_meta_against_annotations']

_REQUIRED = ('name', 'keypoint_names', 'flip_pairs', 'skeleton', 'sigmas', 'upper_body_ids', 'lower_body_ids')
_GREY = (128, 128, 128)


def _read(path):
    if not osp.isfile(path):
        raise FileNotFoundError('dataset metadata file %s does not exist' % path)
    with open(path) as f:
        text = f.read()
    if path.endswith('.json'):
        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError('%s: not valid JSON (%s)' % (path, e)) from None
    if path.endswith('.py'):
        try:
            tree = ast.parse(text, path)
        except SyntaxError as e:
            raise ValueError('%s: not valid Python (%s)' % (path, e)) from None
        for node in tree.body:
            if isinstance(node, ast.Assign) and [getattr(t, 'id', None) for t in node.targets] == ['META']:
                try:
                    return ast.literal_eval(node.value)
                except ValueError:
                    raise ValueError('%s: META must be a literal dict (the file is parsed, never run)'
                                     % path) from None
        raise ValueError('%s: no literal assignment "META = {...}"' % path)
    raise ValueError('%s: dataset metadata must be a .json or .py file' % path)


def _pairs(value, path, field, num):
    if not isinstance(value, (list, tuple)):
        raise ValueError('%s: %s must be a list of [a, b] pairs' % (path, field))
    out = []
    for n, pair in enumerate(value):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
            raise ValueError('%s: %s[%d] = %r is not a pair of joint indices' % (path, field, n, pair))
        for v in pair:
            if not 0 <= v < num:
                raise ValueError('%s: %s[%d] = %r names joint %d, but there are %d keypoints (0..%d)'
                                 % (path, field, n, list(pair), v, num, num - 1))
        out.append(tuple(pair))
    return tuple(out)


def _ids(value, path, field, num):
    return tuple(p[0] for p in _pairs([[v, v] for v in value] if isinstance(value, (list, tuple)) else value,
                                      path, field, num))


def meta_from_dict(d, path='<dict>'):
    """A validated :class:`DatasetMeta` from the dict of a metadata file (errors name ``path`` and the field)."""
    if not isinstance(d, dict):
        raise ValueError('%s: dataset metadata must be an object/dict, got %s' % (path, type(d).__name__))
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ValueError('%s: missing field(s) %s' % (path, ', '.join(missing)))
    unknown = sorted(set(d) - set(_REQUIRED) - {'skeleton_colors', 'keypoint_colors', 'extra'})
    if unknown:
        raise ValueError('%s: unknown field(s) %s' % (path, ', '.join(unknown)))
    names = d['keypoint_names']
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError('%s: keypoint_names must be a non-empty list of strings' % path)
    num = len(names)
    if not isinstance(d['name'], str) or not d['name']:
        raise ValueError('%s: name must be a non-empty string' % path)
    sigmas = d['sigmas']
    if (not isinstance(sigmas, (list, tuple)) or len(sigmas) != num or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in sigmas)):
        raise ValueError('%s: sigmas must be %d positive numbers (one per keypoint), got %r' % (path, num, sigmas))
    flips = _pairs(d['flip_pairs'], path, 'flip_pairs', num)
    seen = [j for p in flips for j in p]
    if len(seen) != len(set(seen)):
        raise ValueError('%s: flip_pairs %r use a joint twice' % (path, d['flip_pairs']))
    skeleton = _pairs(d['skeleton'], path, 'skeleton', num)
    colors = {}
    for field, count in (('skeleton_colors', len(skeleton)), ('keypoint_colors', num)):
        value = d.get(field, [_GREY] * count)
        if (not isinstance(value, (list, tuple)) or len(value) != count
                or not all(isinstance(c, (list, tuple)) and len(c) == 3 for c in value)):
            raise ValueError('%s: %s must be %d BGR triples' % (path, field, count))
        colors[field] = tuple(tuple(int(v) for v in c) for c in value)
    return DatasetMeta(name=d['name'].upper(), keypoint_names=tuple(names), flip_pairs=flips, skeleton=skeleton,
                       sigmas=tuple(float(s) for s in sigmas),
                       upper_body_ids=_ids(d['upper_body_ids'], path, 'upper_body_ids', num),
                       lower_body_ids=_ids(d['lower_body_ids'], path, 'lower_body_ids', num),
                       extra=dict(d.get('extra', {}), meta_file=path), **colors)


def load_meta_file(path):
    """Read, validate and register the metadata file ``path``; returns its :class:`DatasetMeta`."""
    return register_meta(meta_from_dict(_read(path), path))


def check_meta_against_annotations(meta, data, ann_path):
    """The person category of a COCO-style annotation dict must have ``meta``'s keypoint count. Raises
    ValueError naming the annotation file, the metadata source (its file for a user's) and the field."""
    source = meta.extra.get('meta_file', '%s metadata' % meta.name)
    cats = [c for c in data.get('categories', []) if isinstance(c, dict) and c.get('id') == 1]
    names = cats[0].get('keypoints') if cats else None
    if names is not None and len(names) != meta.num_keypoints and 'meta_file' in meta.extra:
        raise ValueError('%s: categories[id=1].keypoints has %d keypoints, %s has %d (keypoint_names)'
                         % (ann_path, len(names), source, meta.num_keypoints))
    meta.validate_coco_categories(data['categories'], ann_path)


def dataset_meta(cfg):
    """The metadata of ``cfg.DATASET``: the file DATASET.META_FILE when set (read, validated and registered under
    its own name, which may not be a built-in one), else the built-in dataset DATASET.NAME."""
    d = cfg.DATASET
    path = d.META_FILE
    if not path:
        return get_dataset_meta(d.NAME)
    return register_meta(meta_from_dict(_read(path), path))   # a built-in name is refused there
