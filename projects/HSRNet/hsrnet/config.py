"""HSRNet keys on top of the Simple Baselines preset (detectron2-style ``add_*_config``)."""
import math

from easydict import EasyDict as edict

from cvpack.modeling.backbones import HSRNET_VARIANTS

# Simple Baselines loads 149813 person instances from COCO train2017 (its "=> load 149813 samples");
# the original schedules are in epochs over that set (reference_mlpe_hsrnet_gcpose.md §2.6).
COCO_TRAIN_SAMPLES = 149813

# torchvision ImageNet weights for the stem and layer1-3 (§2.5): the 110/161 originals used exactly these
# files; the 59-layer one used a DetNet-59 checkpoint nobody publishes, whose stem/layer1-3 are a ResNet-50.
# Set MODEL.PRETRAINED to a local copy (or '' for none) on machines without network access.
IMAGENET_URLS = {
    'resnet50': 'https://download.pytorch.org/models/resnet50-19c8e357.pth',
    'resnet101': 'https://download.pytorch.org/models/resnet101-5d3b4d8f.pth',
    'resnet152': 'https://download.pytorch.org/models/resnet152-b121ed2d.pth',
}


def add_hsrnet_config(cfg, backbone='hsrnet59'):
    """Set the HSRNet model keys (§2.3) on ``cfg`` and return it.

    MODEL.PRETRAINED: the torchvision ImageNet ResNet of the backbone's depth (:data:`IMAGENET_URLS`).
    MODEL.BACKBONE: a key of ``cvpack.modeling.backbones.HSRNET_VARIANTS``.
    MODEL.NUM_DECONV_FILTERS: one entry per deconvolution (2 x 256: the backbone already has stride 16).
    MODEL.DECONV_KERNEL: 4 (default), 3 or 2, the README's ablation; padding as Simple Baselines.
    MODEL.FINAL_CONV_KERNEL: 1 (original) or 3.
    LOSS.USE_TARGET_WEIGHT: JointsMSELoss weighting (True in every original yaml).
    """
    cfg.MODEL.BACKBONE = backbone
    cfg.MODEL.PRETRAINED = IMAGENET_URLS[HSRNET_VARIANTS[backbone][0]]
    cfg.MODEL.NUM_DECONV_FILTERS = [256, 256]
    cfg.MODEL.DECONV_KERNEL = 4
    cfg.MODEL.FINAL_CONV_KERNEL = 1
    if 'LOSS' not in cfg:
        cfg.LOSS = edict()
    cfg.LOSS.USE_TARGET_WEIGHT = True
    return cfg


def epoch_schedule(cfg, epochs, steps, train_samples=COCO_TRAIN_SAMPLES):
    """Express an epoch schedule (Adam, x0.1 at ``steps``) in iterations of the reference batch.

    The reference batch is ``SOLVER.IMS_PER_GPU * (SOLVER.REFERENCE_WORLD_SIZE or 1)`` (the original:
    32 on one P100); an epoch is ``ceil(train_samples / batch)`` iterations (no drop_last in the original).
    """
    batch = cfg.SOLVER.IMS_PER_GPU * (cfg.SOLVER.get('REFERENCE_WORLD_SIZE') or 1)
    per_epoch = math.ceil(train_samples / batch)
    cfg.SOLVER.MAX_ITER = epochs * per_epoch
    cfg.SOLVER.STEPS = tuple(s * per_epoch for s in steps)
    cfg.SOLVER.LR_SCHEDULER = 'multistep'
    cfg.SOLVER.GAMMA = 0.1
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = per_epoch
    return cfg


def set_input_shape(cfg, input_hw):
    """Input crop (h, w), stride-4 heatmaps and Simple Baselines' sigma (2 at 256x192, 3 at 384x288, §2.6)."""
    h, w = input_hw
    cfg.INPUT_SHAPE = [h, w]
    cfg.OUTPUT_SHAPE = [h // 4, w // 4]
    cfg.DATASET.TRAIN.SIGMA = 3 if h >= 384 else 2
    return cfg
