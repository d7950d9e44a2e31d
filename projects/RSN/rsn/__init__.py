"""RSN models: the shared Megvii multi-stage network with the RSB (or Res18 baseline) encoder.

MODEL.BACKBONE picks the encoder ('RSN-18', 'RSN-50', 'Res-18', see cvpack.modeling.multistage.BACKBONES),
MODEL.STAGE_NUM the number of stages (4xRSN = 4). RSN trains from scratch (the original MODEL.WEIGHT = None):
the model has no ``load_pretrained``, so the trainer rejects MODEL.PRETRAINED naming the exp.
"""
from cvpack.modeling.multistage import build_multistage


def build_model(cfg):
    """Build the RSN of ``cfg`` (see :class:`cvpack.modeling.multistage.MultiStageNet`)."""
    return build_multistage(cfg)
