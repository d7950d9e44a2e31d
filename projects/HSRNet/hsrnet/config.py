"""HSRNet keys on top of the Simple Baselines preset (detectron2-style ``add_*_config``).

Input size, sigma, optimiser and the epoch schedule come from ``cvpack.config.simple_baselines``; this adds
the model keys, and the longer schedule of the 59/161-layer 384x288 yamls.
"""
from cvpack.modeling.backbones import HSRNET_VARIANTS, TORCHVISION_URLS
from cvpack.modeling.backbones.hsrnet import canonical_name

# torchvision ImageNet weights for the stem and layer1-3 (docs/reference/mlpe_hsrnet_gcpose.md §2.5, cvpack's
# TORCHVISION_URLS): the 110/161 originals
# used exactly these files; the 59-layer one used a DetNet-59 checkpoint nobody publishes, whose stem/layer1-3
# are a ResNet-50. Set MODEL.PRETRAINED to a local copy (or '' for none) on machines without network access.
IMAGENET_URLS = TORCHVISION_URLS


def add_hsrnet_config(cfg, backbone='hsrnet59'):
    """Set the HSRNet model keys (docs/reference/mlpe_hsrnet_gcpose.md §2.3) on ``cfg`` and return it.

    MODEL.PRETRAINED: the torchvision ImageNet ResNet of the backbone's depth (:data:`IMAGENET_URLS`).
    MODEL.BACKBONE: a key of ``cvpack.modeling.backbones.HSRNET_VARIANTS`` (or an alias like 'HSR-MSNet-59').
    MODEL.NUM_DECONV_FILTERS: one entry per deconvolution (2 x 256: the backbone already has stride 16).
    MODEL.DECONV_KERNEL: 4 (default), 3 or 2, the README's ablation; padding as Simple Baselines.
    MODEL.FINAL_CONV_KERNEL: 1 (original) or 3.
    """
    backbone = canonical_name(backbone)
    cfg.MODEL.BACKBONE = backbone
    cfg.MODEL.PRETRAINED = IMAGENET_URLS[HSRNET_VARIANTS[backbone][0]]
    cfg.MODEL.NUM_DECONV_FILTERS = [256, 256]
    cfg.MODEL.DECONV_KERNEL = 4
    cfg.MODEL.FINAL_CONV_KERNEL = 1
    if list(cfg.INPUT_SHAPE) == [384, 288] and HSRNET_VARIANTS[backbone][0] != 'resnet101':
        # the 59- and 161-layer 384x288 yamls train 160 epochs, x0.1 at 110 and 140
        # (docs/reference/mlpe_hsrnet_gcpose.md §2.6); 110 keeps 140/90/120
        cfg.SOLVER.EPOCHS, cfg.SOLVER.STEP_EPOCHS = 160, [110, 140]
    return cfg
