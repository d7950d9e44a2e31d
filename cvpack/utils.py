"""Small helpers shared across the core."""
import importlib

import numpy as np
import torch


def to_numpy(value, dtype=None):
    """A tensor (any device, any float dtype incl. bf16/fp16) or array-like -> numpy array.

    Low-precision floats go through float32 (numpy has no bfloat16); ``dtype`` casts the result.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.float()
        value = value.cpu().numpy()
    return np.asarray(value, dtype=dtype)


def some_names(names, limit=40, sep=', '):
    """At most ``limit`` of ``names`` joined by ``sep``, then '... (+N more)': error messages about a whole
    wrong network would otherwise list hundreds of keys."""
    names = [str(n) for n in names]
    if len(names) <= limit:
        return sep.join(names)
    return sep.join(names[:limit]) + '%s... (+%d more)' % (sep, len(names) - limit)


def import_target(spec, key, class_only=False):
    """Import ``'module:Class'`` and return the class; errors name the config ``key`` that gave ``spec``.

    The one extension path of the core: a project names its dataset, predictor and evaluator classes in its
    config (``DATASET.CLASS``, ``TEST.PREDICTOR``, ``TEST.EVALUATOR``, a block as ``MODEL.BACKBONE``), so the
    core never imports a project. Every caller calls the target with the config, so a target that cannot be
    called (a module constant) is refused here, naming the key, instead of failing later far from it. A factory
    function (``def build(cfg): ...``) is accepted where the caller only calls it; ``class_only`` refuses it where
    the caller needs the class itself (an encoder block is subclassed and instantiated per stage).
    """
    module, sep, attr = spec.partition(':') if isinstance(spec, str) else ('', '', '')
    if not (sep and module.strip() and attr.strip()):
        raise ValueError("%s must be a 'module:Class' string, got %r" % (key, spec))
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ImportError('%s = %r cannot be imported: %s' % (key, spec, e)) from e
    except Exception as e:   # the module itself raised while importing (SyntaxError, RuntimeError, ...)
        raise ImportError('%s = %r: importing module %r raised %s: %s'
                          % (key, spec, module, type(e).__name__, e)) from e
    if class_only and not isinstance(target, type):
        raise TypeError('%s = %r is a %s, not a class' % (key, spec, type(target).__name__))
    if not callable(target):
        raise TypeError('%s = %r is a %s, not a class or a factory function' % (key, spec, type(target).__name__))
    return target


def configured_class(spec, key, pipeline, core_defaults, what):
    """The class a config names, else the core's default for the exp's pipeline.

    Args:
        spec: the config value of ``key`` ('module:Class', or '' for the core default).
        key: its config key (``DATASET.CLASS``, ``TEST.PREDICTOR``), named in errors.
        pipeline: ``cfg.DATASET.PIPELINE``.
        core_defaults: ``{pipeline: 'module:Class'}`` of the core's own pipelines.
        what: a word for errors ('dataset', 'predictor').
    """
    if spec:
        return import_target(spec, key)
    if pipeline not in core_defaults:
        raise KeyError("no core %s for DATASET.PIPELINE %r (core pipelines: %s); set %s 'module:Class'"
                       % (what, pipeline, ', '.join(core_defaults), key))
    return import_target(core_defaults[pipeline], 'DATASET.PIPELINE %r' % pipeline)
