import os.path as osp

from cvpack.config import config_main
from cvpack.config.simple_baselines import simple_baselines_config
from projects.HSRNet.hsrnet import add_hsrnet_config, epoch_schedule, set_input_shape

cfg = simple_baselines_config(osp.dirname(osp.abspath(__file__)), dataset='COCO')
add_hsrnet_config(cfg, 'hsrnet59')
set_input_shape(cfg, (384, 288))        # 96x72 heatmaps, Gaussian sigma 3 (spec §2.6)
epoch_schedule(cfg, 160, (110, 140))     # the 384x288 59-layer yaml: 160 epochs, x0.1 at 110/140

if __name__ == '__main__':
    config_main(cfg)
