"""MLPE ablation (d): + deconv upsampling (= the released code).

The a-d mapping of the README ablation columns is inferred (see projects/MLPE/README.md).
"""
import os.path as osp

from cvpack.config import config_main
from cvpack.config.cpn import cpn_config
from projects.MLPE.mlpe.config import add_mlpe_config

cfg = add_mlpe_config(cpn_config(osp.dirname(osp.abspath(__file__)), input_shape=(256, 192)), 'resnest50')

if __name__ == '__main__':
    config_main(cfg)
