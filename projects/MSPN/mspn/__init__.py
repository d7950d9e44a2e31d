"""MSPN models: the shared Megvii multi-stage network with ResNet-50 encoders, ImageNet-initialised."""
import functools
import logging

from cvpack.modeling.multistage import build_multistage
from cvpack.modeling.pretrained import load_state_dict

from .imagenet import load_imagenet_resnet

logger = logging.getLogger(__name__)


def load_pretrained(model, source, bgr_input=True):
    """ImageNet init of ``model`` from ``source`` (path or URL of a torchvision-format ResNet-50 state dict):
    every stage's encoder and the stem (see :func:`load_imagenet_resnet`). Returns the LoadReport."""
    report = load_imagenet_resnet(model, load_state_dict(source), bgr_input=bgr_input)
    logger.info('ImageNet init from %s: %s', source, report.summary())
    return report


def build_model(cfg):
    """Build the MSPN of ``cfg``. MODEL.PRETRAINED is not read here: the trainer calls
    ``model.load_pretrained(source)`` when a run starts from scratch (docs/ENGINE.md, "Initial weights").

    The network class is shared with RSN (which has no ImageNet weights), so the method is bound per instance;
    the input colour order (DATASET.COLOR_RGB) decides whether the stem filters are flipped.
    """
    model = build_multistage(cfg)
    model.load_pretrained = functools.partial(load_pretrained, model,
                                              bgr_input=not cfg.DATASET.get('COLOR_RGB', False))
    return model
