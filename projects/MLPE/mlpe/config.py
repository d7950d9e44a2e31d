"""MLPE keys on top of the CPN preset (detectron2-style ``add_*_config``).

Crop, targets, losses, schedule and decoding come from ``cvpack.config.cpn`` (pytorch-cpn's harness); this adds
the model keys of MLPE (docs/reference/mlpe_hsrnet_gcpose.md §1.2-1.5, the ablation switches of §1.10).
"""


def add_mlpe_config(cfg, backbone='resnest50'):
    """Set MLPE's model keys on ``cfg`` with the released code's values and return it.

    MODEL.BACKBONE: 'resnest50' | 'resnest101' (ResNeSt trunk, ``cvpack.modeling.backbones.resnest``).
    MODEL.FEATURE_RETENTION: C5 context fusion ("feature retention", released code: on).
    MODEL.PRED_KERNEL: 3 or 1, kernel of the heatmap convs ("receptive field" ablation).
    MODEL.UPSAMPLE: 'deconv' (released) | 'bilinear' (CPN, "BI").
    MODEL.LATERAL_SKIPS: C4-C2 laterals: built but unused in the released code (False).
    """
    cfg.MODEL.BACKBONE = backbone
    cfg.MODEL.FEATURE_RETENTION = True
    cfg.MODEL.PRED_KERNEL = 3
    cfg.MODEL.UPSAMPLE = 'deconv'
    cfg.MODEL.LATERAL_SKIPS = False
    return cfg
