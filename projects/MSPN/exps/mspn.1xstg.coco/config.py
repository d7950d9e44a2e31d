import os.path as osp

from cvpack.config import config_main
from cvpack.config.megvii import megvii_config
from cvpack.modeling.backbones import TORCHVISION_URLS

cfg = megvii_config(osp.dirname(osp.abspath(__file__)), dataset='COCO')
cfg.MODEL.STAGE_NUM = 1
cfg.MODEL.PRETRAINED = TORCHVISION_URLS['resnet50']  # torchvision ImageNet ResNet-50, every stage

if __name__ == '__main__':
    config_main(cfg)
