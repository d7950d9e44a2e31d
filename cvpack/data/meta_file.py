"""Dataset metadata from a small file a user writes (``DATASET.META_FILE``), and its check against an annotation file.

JSON (preferred)::

    {"name": "MYPOSE", "keypoint_names": ["head", "left_hand", "right_hand"], "flip_pairs": [[1, 2]],
     "skeleton": [[0, 1], [0, 2]], "sigmas": [0.079, 0.062, 0.062],
     "upper_body_ids": [0, 1, 2], "lower_body_ids": []}

or a ``.py`` file holding only a docstring and one literal assignment ``META = {...}`` with the same keys. The
Python file is *parsed* (``ast.literal_eval``), never imported or executed: any other statement is refused.
Optional keys: ``skeleton_colors`` / ``keypoint_colors`` (BGR; default one grey per link / joint), ``extra``.

Rules (every error names the file and the field): keypoint names are unique non-empty strings (compared case- and
separator-blind); a joint in flip_pairs / skeleton / upper_body_ids / lower_body_ids is an index or a keypoint
name; a flip pair has two different joints and a joint is in at most one pair; a skeleton link joins two
different joints, once; colours are ``[b, g, r]`` ints in 0..255, one per link / joint; sigmas are finite > 0,
one per keypoint; the upper and lower body lists have no repeats (they may overlap, as COCO's);
unknown or repeated top-level fields are errors.
"""
import ast
import json
import math
import os.path as osp
import re

from .meta import DatasetMeta, get_dataset_meta, register_meta

__all__ = ['load_meta_file', 'meta_from_dict', 'check_meta_against_annotations', 'norm_name']

_REQUIRED = ('name', 'keypoint_names', 'flip_pairs', 'skeleton', 'sigmas', 'upper_body_ids', 'lower_body_ids')
_OPTIONAL = ('skeleton_colors', 'keypoint_colors', 'extra')
_GREY = (128, 128, 128)
_DATASET_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*')    # it becomes a folder name (DATASET.ROOT)


def norm_name(name):
    """A keypoint name compared case- and separator-blind ('Right Shoulder' = 'right_shoulder')."""
    return name.strip().lower().replace(' ', '_').replace('-', '_')


def _read(path):
    if not osp.exists(path):
        raise FileNotFoundError('dataset metadata file %s does not exist' % path)
    if not osp.isfile(path):
        raise ValueError('%s: dataset metadata must be a file, this is a directory' % path)
    if not path.endswith(('.json', '.py')):
        raise ValueError('%s: dataset metadata must be a .json or .py file' % path)
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError('%s: not UTF-8 text (%s)' % (path, e)) from None
    if not text.strip():
        raise ValueError('%s: the dataset metadata file is empty' % path)
    return _parse_json(text, path) if path.endswith('.json') else _parse_python(text, path)


def _no_duplicate_keys(pairs, path):
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:   # json keeps the last silently: a pasted second "flip_pairs" would hide the first
        raise ValueError('%s: field(s) %s given twice' % (path, ', '.join(twice)))
    return dict(pairs)


def _parse_json(text, path):
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _no_duplicate_keys(pairs, path))
    except json.JSONDecodeError as e:
        raise ValueError('%s: not valid JSON at line %d column %d: %s' % (path, e.lineno, e.colno, e.msg)) from None


def _is_meta_assignment(node):
    if isinstance(node, ast.Assign):
        return [getattr(t, 'id', None) for t in node.targets] == ['META']
    return isinstance(node, ast.AnnAssign) and getattr(node.target, 'id', None) == 'META' and node.value is not None


def _parse_python(text, path):
    """The literal of ``META = {...}``. Any other statement is refused (never run: a user who wrote code there
    expects it to take effect, and ignoring it silently would be worse than stopping)."""
    try:
        tree = ast.parse(text, path)
    except SyntaxError as e:
        raise ValueError('%s: not valid Python%s: %s' % (path, ' at line %d' % e.lineno if e.lineno else '', e.msg)) \
            from None
    except ValueError as e:     # null bytes, before Python 3.11.4
        raise ValueError('%s: not valid Python: %s' % (path, e)) from None
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0].value, 'value', None), str):
        body = body[1:]     # a docstring
    for node in body:
        if not _is_meta_assignment(node):
            raise ValueError('%s: line %d: a metadata file holds only "META = {...}" (a literal; the file is parsed, '
                             'never run), found: %s' % (path, node.lineno, text.splitlines()[node.lineno - 1][:80]))
    if len(body) != 1:
        raise ValueError('%s: %s' % (path, 'META is assigned %d times' % len(body) if body
                                     else 'no literal assignment "META = {...}"'))
    try:
        return ast.literal_eval(body[0].value)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        raise ValueError('%s: line %d: META must be a literal dict (the file is parsed, never run)'
                         % (path, body[0].lineno)) from None


def _joint(value, path, where, names, index):
    """A joint index from an index (0..K-1) or a keypoint name; ``where`` ('flip_pairs[0] = [1, 3]') is named."""
    if isinstance(value, str):
        if norm_name(value) not in index:
            raise ValueError('%s: %s: %r is not one of keypoint_names (%s)' % (path, where, value, ', '.join(names)))
        return index[norm_name(value)]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError('%s: %s: %r is neither a joint index nor a keypoint name' % (path, where, value))
    if not 0 <= value < len(names):
        raise ValueError('%s: %s names joint %d, but there are %d keypoints (0..%d)'
                         % (path, where, value, len(names), len(names) - 1))
    return value


def _list(value, path, field):
    if not isinstance(value, (list, tuple)):
        raise ValueError('%s: %s must be a list, got %s' % (path, field, type(value).__name__))
    return value


def _pairs(value, path, field, names, index):
    """``[[a, b], ...]`` of joint indices or names -> tuple of index pairs; a joint paired with itself is refused."""
    out = []
    for n, pair in enumerate(_list(value, path, field)):
        where = '%s[%d] = %r' % (field, n, list(pair) if isinstance(pair, tuple) else pair)
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError('%s: %s is not a pair [a, b] of joint indices or names' % (path, where))
        a, b = (_joint(v, path, where, names, index) for v in pair)
        if a == b:
            raise ValueError('%s: %s pairs joint %d (%s) with itself' % (path, where, a, names[a]))
        out.append((a, b))
    return tuple(out)


def _flip_pairs(value, path, names, index):
    pairs, first = _pairs(value, path, 'flip_pairs', names, index), {}
    for n, pair in enumerate(pairs):
        for j in pair:
            if j in first:   # a joint in two pairs: the flip permutation would not be its own inverse
                raise ValueError('%s: flip_pairs[%d] uses joint %d (%s) again; it is already in flip_pairs[%d]'
                                 % (path, n, j, names[j], first[j]))
            first[j] = n
    return pairs


def _skeleton(value, path, names, index):
    links, seen = _pairs(value, path, 'skeleton', names, index), {}
    for n, link in enumerate(links):
        key = frozenset(link)
        if key in seen:
            raise ValueError('%s: skeleton[%d] repeats the link of skeleton[%d] (%s - %s)'
                             % (path, n, seen[key], names[link[0]], names[link[1]]))
        seen[key] = n
    return links


def _body_ids(d, path, names, index):
    parts = {}
    for field in ('upper_body_ids', 'lower_body_ids'):
        ids = [_joint(v, path, '%s[%d] = %r' % (field, n, v), names, index)
               for n, v in enumerate(_list(d[field], path, field))]
        twice = sorted({j for j in ids if ids.count(j) > 1})
        if twice:
            raise ValueError('%s: %s lists joint(s) %s twice' % (path, field, twice))
        parts[field] = tuple(ids)
    # An overlap is allowed: the built-in COCO split has one (the hips are in both, Megvii's), and the half-body
    # augmentation reads upper_body_ids only (transforms.half_body_box: every other visible joint is lower body).
    return parts


def _keypoint_names(value, path):
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError('%s: keypoint_names must be a non-empty list of strings' % path)
    seen = {}
    for n, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise ValueError('%s: keypoint_names[%d] = %r is not a non-empty string' % (path, n, name))
        if norm_name(name) in seen:   # names are matched case- and separator-blind (flip pairs, DATASET.COMBINE)
            raise ValueError('%s: keypoint_names[%d] = %r repeats keypoint_names[%d] = %r'
                             % (path, n, name, seen[norm_name(name)], value[seen[norm_name(name)]]))
        seen[norm_name(name)] = n
    return tuple(value), seen


def _sigmas(value, path, num):
    value = _list(value, path, 'sigmas')
    if len(value) != num:
        raise ValueError('%s: sigmas has %d values, expected %d (one per keypoint)' % (path, len(value), num))
    for n, s in enumerate(value):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            raise ValueError('%s: sigmas[%d] = %r is not a finite number > 0' % (path, n, s))
    return tuple(float(s) for s in value)


def _colors(value, path, field, count):
    if value is None:
        return (_GREY,) * count
    value = _list(value, path, field)
    if len(value) != count:
        raise ValueError('%s: %s has %d colours, expected %d' % (path, field, len(value), count))
    for n, c in enumerate(value):
        if (not isinstance(c, (list, tuple)) or len(c) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)):
            raise ValueError('%s: %s[%d] = %r is not a BGR triple of 3 ints in 0..255' % (path, field, n, c))
    return tuple(tuple(c) for c in value)


def _check_fields(d, path):
    if not isinstance(d, dict):
        raise ValueError('%s: dataset metadata must be an object/dict, got %s' % (path, type(d).__name__))
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ValueError('%s: missing field(s) %s' % (path, ', '.join(missing)))
    unknown = sorted(set(d) - set(_REQUIRED) - set(_OPTIONAL), key=str)
    if unknown:
        raise ValueError('%s: unknown field(s) %s (known: %s)' % (path, ', '.join(map(repr, unknown)),
                                                                  ', '.join(_REQUIRED + _OPTIONAL)))
    if not isinstance(d['name'], str) or not _DATASET_NAME.fullmatch(d['name']):
        raise ValueError('%s: name = %r must be a non-empty string of letters, digits, "_", "-" or "."'
                         % (path, d['name']))
    if not isinstance(d.get('extra', {}), dict):
        raise ValueError('%s: extra must be an object/dict, got %s' % (path, type(d['extra']).__name__))


def meta_from_dict(d, path='<dict>'):
    """A validated :class:`DatasetMeta` from the dict of a metadata file (errors name ``path`` and the field)."""
    _check_fields(d, path)
    names, index = _keypoint_names(d['keypoint_names'], path)
    skeleton = _skeleton(d['skeleton'], path, names, index)
    return DatasetMeta(name=d['name'].upper(), keypoint_names=names,
                       flip_pairs=_flip_pairs(d['flip_pairs'], path, names, index), skeleton=skeleton,
                       sigmas=_sigmas(d['sigmas'], path, len(names)), **_body_ids(d, path, names, index),
                       skeleton_colors=_colors(d.get('skeleton_colors'), path, 'skeleton_colors', len(skeleton)),
                       keypoint_colors=_colors(d.get('keypoint_colors'), path, 'keypoint_colors', len(names)),
                       extra=dict(d.get('extra', {}), meta_file=path))


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
