"""Models: shared layers, backbones, losses."""
