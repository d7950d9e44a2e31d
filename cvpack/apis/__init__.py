"""Inference on your own images: ``PoseEstimator(exp_dir, weights)(image) -> list of Person``."""
from .estimator import Person, PoseEstimator, WeightsMismatchError, resolve_device
from .inputs import DetectionFile

__all__ = ['PoseEstimator', 'Person', 'WeightsMismatchError', 'DetectionFile', 'resolve_device']
