"""Trained weights from other frameworks: format detection, explicit key conversion, strict loading.

One path for every entry point (``test.py --checkpoint``, ``MODEL.WEIGHT``, ``python -m cvpack.tools.convert``,
the inference API): :func:`prepare` reads a file (path or URL, through :mod:`cvpack.safe_load`: nothing in it
runs), detects its format, converts it to our keys, and returns the config overrides the weights need;
:func:`apply_overrides` puts those into the exp's config *before* the model is built (architecture options such
as ``MODEL.CONV_BIAS``, and the preprocessing: channel order, mean/std, decoder, crop padding); :func:`load_prepared`
loads strictly, naming every missing or unexpected key and every shape mismatch.

A format is a module exposing::

    detect(obj) -> bool                 # obj: what cvpack.safe_load.load_file returned
    convert(obj, cfg) -> dict(state_dict={our_key: Tensor}, cfg={'DOTTED.KEY': value}, dropped=[str, ...])

``dropped`` lists the source entries left out on purpose (optimizer state, ``num_batches_tracked``, metadata);
any other entry that cannot be placed is an error naming it. Core formats: ``megvii`` (the authors' and our own
checkpoints) and ``mmpose``; an exp adds its project's formats in ``cfg.MODEL.WEIGHT_FORMATS``
(``{name: 'python.module'}``; the core never imports projects). A converted checkpoint we write stores the overrides
next to the weights (``{'model', 'cfg_overrides', 'source'}``), so loading it applies them again.
"""
import copy
import importlib
import logging
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import torch

from ..fileio import atomic_output
from ..safe_load import CheckpointError, is_url, load_file
from ..utils import some_names

__all__ = ['CORE_FORMATS', 'Prepared', 'WeightsMismatchError', 'available_formats', 'get_format', 'detect_format',
           'prepare', 'apply_overrides', 'match_state', 'load_prepared', 'build_model_with_weights',
           'save_converted']

logger = logging.getLogger(__name__)

# Tried in this order after the exp's own formats; 'megvii' (a {'model': ...} dict or a bare state dict) last.
CORE_FORMATS = {'mmpose': 'cvpack.weights.mmpose', 'megvii': 'cvpack.weights.megvii'}


class WeightsMismatchError(CheckpointError):
    """Weights that do not fit the model: the message lists every missing/unexpected key and shape mismatch."""


@dataclass
class Prepared:
    """Weights converted to our keys, with what the model needs to use them."""
    state_dict: Dict[str, torch.Tensor]
    cfg_overrides: Dict[str, object] = field(default_factory=dict)
    format: str = ''
    dropped: List[str] = field(default_factory=list)
    source: str = ''


def available_formats(cfg=None):
    """``{name: module path}``: the exp's ``MODEL.WEIGHT_FORMATS`` first, then the core formats."""
    # cfg None: a call without an exp (load_model_weights(model, path)) knows only the core formats
    project = dict(cfg.MODEL.WEIGHT_FORMATS or {}) if cfg is not None else {}
    out = dict(project)
    for name, path in CORE_FORMATS.items():
        out.setdefault(name, path)
    return out


def get_format(name, cfg=None):
    """The format module called ``name``; errors list the known names."""
    formats = available_formats(cfg)
    if name not in formats:
        raise KeyError('unknown weight format %r; known: %s (project formats come from MODEL.WEIGHT_FORMATS)'
                       % (name, ', '.join(sorted(formats))))
    try:
        module = importlib.import_module(formats[name])
    except ImportError as e:
        raise ImportError('weight format %r: module %r cannot be imported: %s' % (name, formats[name], e)) from e
    for attr in ('detect', 'convert'):
        if not callable(getattr(module, attr, None)):
            raise TypeError('weight format %r (%s) has no %s()' % (name, formats[name], attr))
    return module


def _describe(obj):
    if isinstance(obj, dict):
        keys = list(obj)
        return 'a dict with keys %s%s' % (keys[:8], ' ...' if len(keys) > 8 else '')
    return 'a %s' % type(obj).__name__


def detect_format(obj, cfg=None, source=''):
    """Name of the first format (project ones first) whose ``detect(obj)`` is true; CheckpointError if none."""
    formats = available_formats(cfg)
    for name in formats:
        if get_format(name, cfg).detect(obj):
            return name
    raise CheckpointError(source, 'no weight format recognises this file (%s); tried %s'
                          % (_describe(obj), ', '.join(formats)))


def _as_tensor(key, value, source):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise CheckpointError(source, 'converted entry %r is a %s, not a tensor' % (key, type(value).__name__))


def prepare(cfg, source, fmt='auto', obj=None):
    """Read ``source`` (path or URL; or use the already loaded ``obj``) and convert it for ``cfg``'s model.

    Args:
        cfg: the exp's config (formats read architecture keys from it; overrides are not applied here).
        fmt: 'auto' (detect) or a format name.
    Returns:
        :class:`Prepared`. Raises CheckpointError / UnsafeFileError naming the file, KeyError for an unknown
        format, and the format's own errors (naming every key it could not place).
    """
    source = str(source)
    if obj is None:
        obj = load_file(source)
    name = detect_format(obj, cfg, source) if fmt in (None, '', 'auto') else fmt
    module = get_format(name, cfg)
    if fmt not in (None, '', 'auto') and not module.detect(obj):
        raise CheckpointError(source, 'is not in the %r format (%s)' % (name, _describe(obj)))
    try:
        out = module.convert(obj, cfg)
    except CheckpointError:
        raise
    except (ValueError, KeyError) as e:   # formats name the keys; the file is named here
        raise CheckpointError(source, 'cannot convert (format %s): %s' % (name, e.args[0] if e.args else e)) from e
    missing = {'state_dict', 'cfg', 'dropped'} - set(out)
    if missing:
        raise TypeError('weight format %r: convert() returned no %s' % (name, sorted(missing)))
    state = {k: _as_tensor(k, v, source) for k, v in out['state_dict'].items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:   # a diverged run's weights: top-down decoders would refuse every heatmap, GCPose drop every box
        raise CheckpointError(source, '%d tensors hold NaN/inf (%s%s): the weights of a diverged run?'
                              % (len(bad), ', '.join(bad[:5]), ' ...' if len(bad) > 5 else ''))
    return Prepared(state, dict(out['cfg'] or {}), name, list(out['dropped'] or []), source)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def apply_overrides(cfg, overrides, source='', log=None):
    """A copy of ``cfg`` with ``overrides`` ({'DOTTED.KEY': value}) set, frozen when ``cfg`` was. Every key must
    exist in ``cfg`` (an override nobody reads would be a silent no-op); changed values are logged. The result is
    checked against the config schema as a command-line override is (ConfigError naming ``source``, the key and
    the value: a file's ``INPUT.STDS [0, 0, 0]`` or 1-value mmpose mean must not reach the model)."""
    from ..config import freeze, is_frozen
    from ..config.schema import ConfigError, validate_config
    frozen, cfg = is_frozen(cfg), copy.deepcopy(cfg)
    log = log or logger
    for key, value in (overrides or {}).items():
        node, parts = cfg, key.split('.')
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise KeyError('%s: the weights need config key %r, which this exp does not have' % (source, key))
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise KeyError('%s: the weights need config key %r, which this exp does not have' % (source, key))
        old = node[parts[-1]]
        node[parts[-1]] = _plain(value)
        if _plain(old) != _plain(value):
            log.info('weights %s set %s = %r (exp had %r)', osp.basename(source) or source, key, value, old)
    if overrides:
        try:
            validate_config(cfg)
        except ConfigError as e:
            raise ConfigError('%s: the config values the weights set are refused: %s' % (source, e)) from None
    return freeze(cfg) if frozen else cfg


def _quoted(names):
    """``['a', 'b', ... (+N more)]``: a capped list of key names for the messages."""
    return '[%s]' % some_names([repr(str(n)) for n in names])


def match_state(model, state_dict, source='', strict=True):
    """Compare ``state_dict`` (read from ``source``, named in errors) with ``model``'s; the one check of every
    loader (``test.py``, fine-tuning weights, resume, the convert tool, the inference API).

    Raises :class:`WeightsMismatchError` naming the file and every offending key (capped lists):
    entries that are not tensors; a file none of whose tensors belongs to the model (another network:
    also without ``strict``, as loading it would silently keep the random init); shape mismatches; with
    ``strict`` missing and unexpected keys (``num_batches_tracked`` counters may be missing: formats drop
    them, eval never reads them). The error carries the full lists as ``missing``, ``unexpected``, ``shapes``.

    Returns:
        (loaded, missing, unexpected) key lists; ``loaded`` is what ``model.load_state_dict(state_dict,
        strict=False)`` copies.
    """
    name, target = type(model).__name__, model.state_dict()
    not_tensors = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise WeightsMismatchError(source, 'entries that are not tensors: %s' % some_names(not_tensors, 5))
    loaded = [k for k in state_dict if k in target]
    missing = [k for k in target if k not in state_dict and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state_dict if k not in target]
    shapes = ['%s: file %s vs model %s' % (k, tuple(state_dict[k].shape), tuple(target[k].shape))
              for k in loaded if tuple(state_dict[k].shape) != tuple(target[k].shape)]
    if not [k for k in loaded if not k.endswith('num_batches_tracked')]:
        reason = ('none of its %d tensors belongs to the %s model (another network?): file keys %s; model keys %s'
                  % (len(state_dict), name, some_names(state_dict, 5) or 'none', some_names(target, 5)))
    else:
        problems = ['%d shape mismatches: %s' % (len(shapes), some_names(shapes, sep='; '))] if shapes else []
        if strict and missing:
            problems.append('%d model tensors missing from the file: %s' % (len(missing), _quoted(missing)))
        if strict and unexpected:
            problems.append('%d file tensors unexpected: %s' % (len(unexpected), _quoted(unexpected)))
        if not problems:
            return loaded, missing, unexpected
        head = ("does not fit the %s model (another exp's network?)" % name if shapes else
                'does not match the %s model (strict loading; test.py --non-strict allows it)' % name)
        reason = '%s: %s' % (head, '; '.join(problems))
    err = WeightsMismatchError(source, reason)
    err.missing, err.unexpected, err.shapes = missing, unexpected, shapes   # the full lists
    raise err


def load_prepared(model, prepared, strict=True, log=None):
    """Load a :class:`Prepared` into ``model`` (built with its overrides applied); returns (missing, unexpected)."""
    log = log or logger
    loaded, missing, unexpected = match_state(model, prepared.state_dict, prepared.source, strict)
    model.load_state_dict(prepared.state_dict, strict=False)
    log.info('loaded %d tensors from %s (format %s; %d source entries dropped; %d missing %s; %d unexpected %s)',
             len(loaded), prepared.source, prepared.format, len(prepared.dropped),
             len(missing), missing[:10], len(unexpected), unexpected[:10])
    return missing, unexpected


def build_model_with_weights(exp, source, opts=None, fmt='auto', strict=True, log=None, obj=None):
    """Build an exp's model with the weights' overrides applied, and load ``source`` into it (strictly).

    Args:
        exp: an exp folder, or a ``(cfg, build_model)`` pair.
        source: path or URL of weights in any known format.
        opts: ``KEY VALUE`` overrides of the exp config (applied before the weights' own overrides).
        obj: the already loaded content of ``source`` (then ``source`` only names it in messages).
    Returns:
        (cfg with the overrides applied, model in eval mode, :class:`Prepared`).
    """
    from ..config import freeze, merge_from_list
    if isinstance(exp, (tuple, list)):
        cfg, build_model = exp
        cfg = freeze(merge_from_list(copy.deepcopy(cfg), list(opts or [])))
    else:
        from ..exp import import_exp_module, load_exp
        cfg, _ = load_exp(exp, opts, build=False)
        network = import_exp_module(exp, 'network', aliases={'config': import_exp_module(exp, 'config')})
        build_model = network.build_model
    prepared = prepare(cfg, source, fmt, obj=obj)
    cfg = apply_overrides(cfg, prepared.cfg_overrides, prepared.source, log)
    model = build_model(cfg)
    load_prepared(model, prepared, strict=strict, log=log)
    return cfg, model.eval(), prepared


def save_converted(prepared, path):
    """Write ``{'model', 'cfg_overrides', 'source'}`` atomically (temporary file + ``os.replace``); returns path.

    ``source`` records where the weights came from (file name or URL, format, size, what was dropped), so a
    converted file can be traced; loading it (format 'megvii') applies ``cfg_overrides`` again.
    """
    src = prepared.source
    info = {'file': src if is_url(src) else osp.basename(src), 'format': prepared.format,
            'dropped': list(prepared.dropped), 'converted_at': time.strftime('%Y-%m-%d %H:%M:%S')}
    if not is_url(src) and osp.isfile(src):
        info['bytes'] = osp.getsize(src)
    state = {'model': prepared.state_dict, 'cfg_overrides': dict(prepared.cfg_overrides), 'source': info}
    path = osp.abspath(path)
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    return path
