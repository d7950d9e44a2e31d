"""GCPose R-50-FPN on COCO (README: 1 GPU, 2 images/iter, lr 0.0025, 2.16 M iterations); all preset values."""
import os.path as osp

from cvpack.config import config_main
from cvpack.config.detection import detection_config

cfg = detection_config(osp.dirname(osp.abspath(__file__)))
cfg.MODEL.BACKBONE = 'resnet50'
# torchvision ImageNet weights (IMAGENET1K_V1), stride-in-3x3 + RGB as the preset; read by the trainer only
cfg.MODEL.PRETRAINED = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
cfg.TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor:DetectionPredictor'
cfg.TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:DetectionEvaluator'
if __name__ == '__main__':
    config_main(cfg)
