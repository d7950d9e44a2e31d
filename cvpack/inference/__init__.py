"""Predictors: ``build_predictor(cfg) -> (model, batch) -> list of instance dicts``."""
import importlib

# cfg.DATASET.PIPELINE -> 'module:Class', imported lazily so a pipeline's heavy deps load only when used.
# GCPose registers 'detection' here (or via register_predictor) with its own predictor.
PREDICTORS = {
    'megvii': 'cvpack.inference.topdown:TopDownPredictor',
    'simple_baselines': 'cvpack.inference.topdown:TopDownPredictor',
    'cpn': 'cvpack.inference.topdown:TopDownPredictor',
    'detection': 'projects.GCPose.gcpose.predictor:DetectionPredictor',   # GCPose / Keypoint R-CNN
}


def register_predictor(pipeline, target):
    """Add a predictor for ``pipeline``: a class/factory taking cfg, or a 'module:attr' string."""
    PREDICTORS[pipeline] = target


def build_predictor(cfg):
    """Predictor for cfg.DATASET.PIPELINE (top-down: flip test + decode + map back + rescore)."""
    pipeline = cfg.DATASET.PIPELINE
    if pipeline not in PREDICTORS:
        raise KeyError('no predictor for DATASET.PIPELINE %r; known: %s' % (pipeline, sorted(PREDICTORS)))
    target = PREDICTORS[pipeline]
    if isinstance(target, str):
        module, attr = target.split(':')
        target = getattr(importlib.import_module(module), attr)
    return target(cfg)
