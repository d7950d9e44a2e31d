"""Unmodified Detectron2 Keypoint R-CNN R-50-FPN baseline: stock 8-conv head, FPN-level pooling, no enlargement."""
import os.path as osp

from cvpack.config import config_main
from projects.GCPose.gcpose import add_gcpose_config, detection_config

cfg = detection_config(osp.dirname(osp.abspath(__file__)))
add_gcpose_config(cfg, 'resnet50', gcm=False)

if __name__ == '__main__':
    config_main(cfg)
