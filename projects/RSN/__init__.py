"""RSN: Residual Steps Network (Cai et al., ECCV 2020)."""
