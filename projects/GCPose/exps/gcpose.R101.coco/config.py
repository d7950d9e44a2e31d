"""GCPose R-101-FPN on COCO: the R-50 exp with a ResNet-101 trunk."""
import os.path as osp

from cvpack.config import config_main
from cvpack.config.detection import detection_config

cfg = detection_config(osp.dirname(osp.abspath(__file__)))
cfg.MODEL.BACKBONE = 'resnet101'
# torchvision ImageNet weights (IMAGENET1K_V2), stride-in-3x3 + RGB as the preset; read by the trainer only
cfg.MODEL.PRETRAINED = 'https://download.pytorch.org/models/resnet101-cd907fc2.pth'
cfg.TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor:DetectionPredictor'
cfg.TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:DetectionEvaluator'
if __name__ == '__main__':
    config_main(cfg)
