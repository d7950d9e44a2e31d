"""Predictors: ``build_predictor(cfg) -> (model, batch) -> list of instance dicts``."""
from ..data.build import TOP_DOWN_PIPELINES
from ..utils import import_target

__all__ = ['build_predictor', 'predictor_class']


def predictor_class(cfg):
    """The class ``cfg.TEST.PREDICTOR`` names ('module:Class': a project's own predictor, e.g. GCPose's
    whole-image one; the core never imports a project), else the core's top-down predictor (flip test + decode +
    map back + rescore) for the top-down pipelines (``cvpack.data.TOP_DOWN_PIPELINES``)."""
    spec = cfg.TEST.PREDICTOR
    if spec:
        return import_target(spec, 'TEST.PREDICTOR')
    pipeline = cfg.DATASET.PIPELINE
    if pipeline not in TOP_DOWN_PIPELINES:
        raise KeyError("no core predictor for DATASET.PIPELINE %r (top-down pipelines: %s); set TEST.PREDICTOR "
                       "'module:Class'" % (pipeline, ', '.join(TOP_DOWN_PIPELINES)))
    from .topdown import TopDownPredictor
    return TopDownPredictor


def build_predictor(cfg):
    """``predictor_class(cfg)(cfg)``."""
    return predictor_class(cfg)(cfg)
