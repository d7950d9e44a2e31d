"""MSPN models: the shared Megvii multi-stage network with ResNet-50 encoders, ImageNet-initialised."""
import logging

from cvpack.modeling.multistage import build_multistage
from cvpack.modeling.pretrained import load_state_dict

from .imagenet import load_imagenet_resnet

logger = logging.getLogger(__name__)


def build_model(cfg):
    """Build the MSPN of ``cfg``; with MODEL.PRETRAINED (path or URL of a torchvision-format ResNet-50 state dict)
    every stage's encoder and the stem start from it (see :func:`load_imagenet_resnet`)."""
    model = build_multistage(cfg)
    if cfg.MODEL.get('PRETRAINED'):
        report = load_imagenet_resnet(model, load_state_dict(cfg.MODEL.PRETRAINED),
                                      bgr_input=not cfg.DATASET.get('COLOR_RGB', False))
        logger.info('ImageNet init from %s: %s', cfg.MODEL.PRETRAINED, report.summary())
    return model
