"""Heatmap decoding: flip test, decoders (input-crop pixels) and the map back to image pixels."""
from .coords import to_image_coords, to_image_coords_affine, to_input_coords  # noqa: F401
from .flip import flip_back  # noqa: F401
from .heatmap import (  # noqa: F401
    DECODERS, decode_argmax, decode_dark, decode_heatmaps, decode_megvii, decode_quarter, decoder_kwargs,
)
