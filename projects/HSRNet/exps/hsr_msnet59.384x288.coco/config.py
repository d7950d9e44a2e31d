import os.path as osp

from cvpack.config import config_main
from cvpack.config.simple_baselines import simple_baselines_config
from projects.HSRNet.hsrnet import add_hsrnet_config

cfg = simple_baselines_config(osp.dirname(osp.abspath(__file__)), input_shape=(384, 288))
add_hsrnet_config(cfg, 'hsr_msnet59')
cfg.SOLVER.EPOCHS = 160               # the 384x288 59-layer yamls: 160 epochs, x0.1 at 110 and 140
cfg.SOLVER.STEP_EPOCHS = [110, 140]

if __name__ == '__main__':
    config_main(cfg)
