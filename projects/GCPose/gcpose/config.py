"""GCPose keys on top of the detection preset (detectron2-style ``add_*_config``)."""
from cvpack.modeling.backbones import TORCHVISION_URLS


def add_gcpose_config(cfg, backbone='resnet50', gcm=True):
    """Add GCPose's keypoint-head keys to a detection preset (:func:`projects.GCPose.gcpose.preset.detection_config`)
    and set the trunk and its ImageNet weights; returns ``cfg``.

    MODEL.ROI_KEYPOINT_HEAD (docs/reference/mlpe_hsrnet_gcpose.md §3.1): GCM_POSITIONS (convs a Global Context
    Module precedes), GCM_HEADS, P2_ONLY (pool keypoint RoIs from P2 only), BOX_ENLARGE (keypoint RoI scale),
    ZERO_PAD_OUTSIDE (RoIAlign samples outside the map read zeros on the sides some enlarged box of the batch
    crosses, as the original's padding; :func:`projects.GCPose.gcpose.roi_heads.outside_padding`).

    Args:
        backbone: 'resnet50' or 'resnet101'.
        gcm: True: GCMs before convs 0 and 4, P2-only pooling, x1.3 boxes, zeros outside the map. False gives
            the unmodified Keypoint R-CNN baseline: stock 8-conv head pooling from the FPN levels, no x1.3 box
            enlargement, the compiled op's border rule instead of zero padding.
    """
    cfg.MODEL.BACKBONE = backbone
    # torchvision ImageNet weights match the preset's stride-in-3x3 trunk, RGB input and ImageNet mean/std
    cfg.MODEL.PRETRAINED = TORCHVISION_URLS[backbone]
    head = cfg.MODEL.ROI_KEYPOINT_HEAD
    head.GCM_HEADS = 4
    if gcm:
        head.GCM_POSITIONS, head.P2_ONLY, head.BOX_ENLARGE, head.ZERO_PAD_OUTSIDE = [0, 4], True, 1.3, True
    else:
        head.GCM_POSITIONS, head.P2_ONLY, head.BOX_ENLARGE, head.ZERO_PAD_OUTSIDE = [], False, 1.0, False
    # Foreign weights the core converter may meet (cvpack.tools.convert, test.py --checkpoint, MODEL.WEIGHT):
    # Detectron2's model zoo / the GCPose authors' checkpoints (README "Pretrained models"). The core may or may
    # not have created the key already; EasyDict's dict.setdefault would bypass its attribute, so test first.
    if 'WEIGHT_FORMATS' not in cfg.MODEL or cfg.MODEL.WEIGHT_FORMATS is None:
        cfg.MODEL.WEIGHT_FORMATS = {}
    cfg.MODEL.WEIGHT_FORMATS['detectron2'] = 'projects.GCPose.gcpose.detectron2_format'
    return cfg
