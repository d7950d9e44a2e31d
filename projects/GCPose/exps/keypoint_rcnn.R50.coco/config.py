"""Unmodified Detectron2 Keypoint R-CNN R-50-FPN baseline: stock 8-conv head, FPN-level pooling, no enlargement."""
import os.path as osp

from cvpack.config import config_main
from cvpack.config.detection import detection_config

cfg = detection_config(osp.dirname(osp.abspath(__file__)))
# torchvision ImageNet weights (IMAGENET1K_V1), stride-in-3x3 + RGB as the preset; read by the trainer only
cfg.MODEL.PRETRAINED = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
cfg.MODEL.ROI_KEYPOINT_HEAD.GCM_POSITIONS = []
cfg.MODEL.ROI_KEYPOINT_HEAD.P2_ONLY = False
cfg.MODEL.ROI_KEYPOINT_HEAD.BOX_ENLARGE = 1.0
cfg.MODEL.ROI_KEYPOINT_HEAD.ZERO_PAD_OUTSIDE = False
cfg.TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor:DetectionPredictor'
cfg.TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:DetectionEvaluator'
if __name__ == '__main__':
    config_main(cfg)
