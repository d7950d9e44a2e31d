"""Predictors: ``build_predictor(cfg) -> (model, batch) -> list of instance dicts``."""
from ..data.build import TOP_DOWN_PIPELINES
from ..utils import configured_class

__all__ = ['build_predictor', 'predictor_class']


def predictor_class(cfg):
    """The class ``cfg.TEST.PREDICTOR`` names ('module:Class': a project's own predictor, e.g. GCPose's
    whole-image one; the core never imports a project), else the core's top-down predictor (flip test + decode +
    map back + rescore) for the top-down pipelines (``cvpack.data.TOP_DOWN_PIPELINES``)."""
    core = {pipeline: 'cvpack.inference.topdown:TopDownPredictor' for pipeline in TOP_DOWN_PIPELINES}
    return configured_class(cfg.TEST.PREDICTOR, 'TEST.PREDICTOR', cfg.DATASET.PIPELINE, core, 'predictor')


def build_predictor(cfg):
    """``predictor_class(cfg)(cfg)``."""
    return predictor_class(cfg)(cfg)
