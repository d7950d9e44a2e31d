import os.path as osp

from cvpack.config import config_main
from cvpack.config.megvii import megvii_config

cfg = megvii_config(osp.dirname(osp.abspath(__file__)), dataset='MPII')
cfg.MODEL.STAGE_NUM = 2
cfg.MODEL.PRETRAINED = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'  # torchvision ImageNet ResNet-50

if __name__ == '__main__':
    config_main(cfg)
