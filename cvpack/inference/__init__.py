"""Predictors: ``build_predictor(cfg) -> (model, batch) -> list of instance dicts``."""
import importlib

__all__ = ['PREDICTORS', 'build_predictor', 'import_target', 'register_predictor']

# cfg.DATASET.PIPELINE -> 'module:Class', imported lazily so a pipeline's heavy deps load only when used.
# A project's own predictor (GCPose's whole-image 'detection' one) is named by its exps in cfg.TEST.PREDICTOR
# instead, so the core never imports project code.
PREDICTORS = {
    'megvii': 'cvpack.inference.topdown:TopDownPredictor',
    'simple_baselines': 'cvpack.inference.topdown:TopDownPredictor',
    'cpn': 'cvpack.inference.topdown:TopDownPredictor',
}


def import_target(spec, key):
    """Import ``'module:attr'`` and return the attribute; errors name the config ``key`` that gave ``spec``."""
    module, sep, attr = str(spec).partition(':')
    if not (sep and module and attr):
        raise ValueError("%s must be a 'module:Class' string, got %r" % (key, spec))
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ImportError('%s = %r cannot be imported: %s' % (key, spec, e)) from e


def register_predictor(pipeline, target):
    """Add a predictor for ``pipeline``: a class/factory taking cfg, or a 'module:attr' string."""
    PREDICTORS[pipeline] = target


def build_predictor(cfg):
    """Predictor of ``cfg.TEST.PREDICTOR`` ('module:Class', built as ``Class(cfg)``) when set, else the
    DATASET.PIPELINE default (top-down: flip test + decode + map back + rescore)."""
    spec = cfg.TEST.PREDICTOR
    if spec:
        return import_target(spec, 'TEST.PREDICTOR')(cfg)
    pipeline = cfg.DATASET.PIPELINE
    if pipeline not in PREDICTORS:
        raise KeyError("no predictor for DATASET.PIPELINE %r; known: %s; or set TEST.PREDICTOR 'module:Class'"
                       % (pipeline, sorted(PREDICTORS)))
    target = PREDICTORS[pipeline]
    if isinstance(target, str):
        target = import_target(target, 'PREDICTORS[%r]' % pipeline)
    return target(cfg)
