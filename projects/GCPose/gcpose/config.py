"""GCPose keys on top of the detection preset (detectron2-style ``add_*_config``)."""
from cvpack.modeling.backbones import TORCHVISION_URLS


def add_gcpose_config(cfg, backbone='resnet50', gcm=True):
    """Set the trunk, its ImageNet weights and the test-time predictor/evaluator of a GCPose exp.

    Args:
        backbone: 'resnet50' or 'resnet101'.
        gcm: False gives the unmodified Keypoint R-CNN baseline: stock 8-conv head pooling from the FPN
            levels, no x1.3 box enlargement, the compiled op's border rule instead of zero padding.
    """
    cfg.MODEL.BACKBONE = backbone
    # torchvision ImageNet weights match the preset's stride-in-3x3 trunk, RGB input and ImageNet mean/std
    cfg.MODEL.PRETRAINED = TORCHVISION_URLS[backbone]
    if not gcm:
        head = cfg.MODEL.ROI_KEYPOINT_HEAD
        head.GCM_POSITIONS, head.P2_ONLY, head.BOX_ENLARGE, head.ZERO_PAD_OUTSIDE = [], False, 1.0, False
    # Foreign weights the core converter may meet (cvpack.tools.convert, test.py --checkpoint, MODEL.WEIGHT):
    # Detectron2's model zoo / the GCPose authors' checkpoints (README "Pretrained models"). The core may or may
    # not have created the key already; EasyDict's dict.setdefault would bypass its attribute, so test first.
    if 'WEIGHT_FORMATS' not in cfg.MODEL or cfg.MODEL.WEIGHT_FORMATS is None:
        cfg.MODEL.WEIGHT_FORMATS = {}
    cfg.MODEL.WEIGHT_FORMATS['detectron2'] = 'projects.GCPose.gcpose.detectron2_format'
    cfg.TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor:DetectionPredictor'
    cfg.TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:DetectionEvaluator'
    return cfg
