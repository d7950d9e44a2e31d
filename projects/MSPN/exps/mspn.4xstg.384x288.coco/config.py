import os.path as osp

from cvpack.config import config_main, dark_kernel
from cvpack.config.megvii import megvii_config
from cvpack.modeling.backbones import TORCHVISION_URLS

cfg = megvii_config(osp.dirname(osp.abspath(__file__)), dataset='COCO')
cfg.MODEL.STAGE_NUM = 4
cfg.MODEL.PRETRAINED = TORCHVISION_URLS['resnet50']  # torchvision ImageNet ResNet-50, every stage
cfg.INPUT_SHAPE = [384, 288]
cfg.OUTPUT_SHAPE = [96, 72]
cfg.TEST.DARK_KERNEL = dark_kernel(cfg.OUTPUT_SHAPE)  # 17 (used with TEST.DECODER 'dark')

if __name__ == '__main__':
    config_main(cfg)
