import os.path as osp

from cvpack.config import config_main
from cvpack.config.simple_baselines import simple_baselines_config
from projects.HSRNet.hsrnet import add_hsrnet_config

cfg = simple_baselines_config(osp.dirname(osp.abspath(__file__)), input_shape=(256, 192))
add_hsrnet_config(cfg, 'hsr_msnet161')

if __name__ == '__main__':
    config_main(cfg)
