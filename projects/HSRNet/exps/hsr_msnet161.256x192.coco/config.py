import os.path as osp

from cvpack.config import config_main
from cvpack.config.simple_baselines import simple_baselines_config
from projects.HSRNet.hsrnet import add_hsrnet_config

cfg = simple_baselines_config(osp.dirname(osp.abspath(__file__)), input_shape=(256, 192))
add_hsrnet_config(cfg, 'hsr_msnet161')
# The original yaml ran DataParallel on GPUS '0,1': 2 x 32 = 64 samples a step, BatchNorm over 32 per GPU.
# Reproduce with 2 processes (torchrun --nproc_per_node=2); one process trains with 32 (defects.md F#21).

if __name__ == '__main__':
    config_main(cfg)
