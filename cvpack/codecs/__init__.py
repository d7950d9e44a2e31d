"""Keypoint codecs: training-target encoder + decoder + score rule + frame in one object (cfg.CODEC)."""
from .heatmap import (  # noqa: F401
    CODECS, DECODER_CONVENTIONS, CPNHeatmap, HeatmapCodec, MSRAHeatmap, MegviiHeatmap, build_codec,
)
