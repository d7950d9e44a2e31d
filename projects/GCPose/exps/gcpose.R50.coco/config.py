"""GCPose R-50-FPN on COCO (README: 1 GPU, 2 images/iter, lr 0.0025, 2.16 M iterations); all preset values."""
import os.path as osp

from cvpack.config import config_main
from projects.GCPose.gcpose import add_gcpose_config, detection_config

cfg = detection_config(osp.dirname(osp.abspath(__file__)))
add_gcpose_config(cfg, 'resnet50')

if __name__ == '__main__':
    config_main(cfg)
