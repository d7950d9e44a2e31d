"""GCPose R-101-FPN on COCO: the R-50 exp with a ResNet-101 trunk."""
import os.path as osp

from cvpack.config import config_main
from projects.GCPose.gcpose import add_gcpose_config, detection_config

cfg = detection_config(osp.dirname(osp.abspath(__file__)))
add_gcpose_config(cfg, 'resnet101')

if __name__ == '__main__':
    config_main(cfg)
