"""GCPose keys on top of the detection preset (detectron2-style ``add_*_config``)."""

# torchvision ImageNet weights: they match the preset's stride-in-3x3 trunk, RGB input and ImageNet mean/std
# (README "Weights"); read by the trainer only when training from scratch.
IMAGENET_URLS = {
    'resnet50': 'https://download.pytorch.org/models/resnet50-0676ba61.pth',    # IMAGENET1K_V1
    'resnet101': 'https://download.pytorch.org/models/resnet101-cd907fc2.pth',  # IMAGENET1K_V2
}


def add_gcpose_config(cfg, backbone='resnet50', gcm=True):
    """Set the trunk, its ImageNet weights and the test-time predictor/evaluator of a GCPose exp.

    Args:
        backbone: 'resnet50' or 'resnet101'.
        gcm: False gives the unmodified Keypoint R-CNN baseline: stock 8-conv head pooling from the FPN
            levels, no x1.3 box enlargement, the compiled op's border rule instead of zero padding.
    """
    cfg.MODEL.BACKBONE = backbone
    cfg.MODEL.PRETRAINED = IMAGENET_URLS[backbone]
    if not gcm:
        head = cfg.MODEL.ROI_KEYPOINT_HEAD
        head.GCM_POSITIONS, head.P2_ONLY, head.BOX_ENLARGE, head.ZERO_PAD_OUTSIDE = [], False, 1.0, False
    cfg.TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor:DetectionPredictor'
    cfg.TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:DetectionEvaluator'
    return cfg
