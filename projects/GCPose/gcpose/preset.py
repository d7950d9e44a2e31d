"""The detection preset (GCPose / Keypoint R-CNN): Detectron2 v0.5 ``keypoint_rcnn_R_50_FPN_3x`` defaults.

Numbers are from docs/reference/mlpe_hsrnet_gcpose.md §4.1 (Detectron2); GCPose's own keys (§3: ``GCM_*``,
``P2_ONLY``, ``BOX_ENLARGE``, ``ZERO_PAD_OUTSIDE``) are added by
:func:`projects.GCPose.gcpose.config.add_gcpose_config`, which every exp calls (``gcm=False`` for the stock
Keypoint R-CNN baseline). The preset names this project's dataset, predictor and evaluator as 'module:Class'
strings (``DATASET.CLASS``, ``TEST.PREDICTOR``, ``TEST.EVALUATOR``): the core has no default for whole-image
models and never imports this package.

Weights / input convention: ``MODEL.PRETRAINED`` takes torchvision-format ResNet state dicts, which are
stride-in-3x3 and expect RGB input normalised with the ImageNet mean/std (in 0-255 units). The preset
therefore uses ``STRIDE_IN_1X1 = False``, ``COLOR_RGB = True`` and those statistics. For MSRA caffe2
R-50.pkl / R-101.pkl weights (converted to these key names), Detectron2's setting is
``MODEL.RESNET.STRIDE_IN_1X1 True``, BGR, mean (103.530, 116.280, 123.675), std (1, 1, 1).
``MODEL.PRETRAINED`` stays None here (it depends on the depth); the exps set the torchvision URL. With
FREEZE_AT 2 and FrozenBN a run without it trains on a random frozen stem: the model warns at train().
"""
from easydict import EasyDict as edict

from cvpack.config.base import base_config
from cvpack.config.datasets import dataset_block


def _dataset(root_dir):
    d = dataset_block('COCO', root_dir, 'detection')   # files + keypoint metadata shared by every preset
    d.COLOR_RGB = True                 # torchvision ImageNet weights (see above)
    d.MIN_KEYPOINTS_PER_IMAGE = 1      # images with fewer labelled keypoints are dropped (train)
    d.CLASS = 'projects.GCPose.gcpose.data:DetectionDataset'
    return d


def _model():
    m = edict()
    m.BACKBONE = 'resnet50'
    m.RESNET = edict(STRIDE_IN_1X1=False, FREEZE_AT=2, NORM='FrozenBN')
    m.RPN = edict(
        ANCHOR_SIZES=[32, 64, 128, 256, 512], ASPECT_RATIOS=[0.5, 1.0, 2.0],
        IOU_THRESHOLDS=[0.3, 0.7], IOU_LABELS=[0, -1, 1], BATCH_SIZE_PER_IMAGE=256, POSITIVE_FRACTION=0.5,
        BBOX_REG_WEIGHTS=[1.0, 1.0, 1.0, 1.0], NMS_THRESH=0.7,
        PRE_NMS_TOPK_TRAIN=2000, PRE_NMS_TOPK_TEST=1000,
        POST_NMS_TOPK_TRAIN=1500, POST_NMS_TOPK_TEST=1000)   # 1500: the keypoint config's value
    m.ROI_HEADS = edict(
        NUM_CLASSES=1, IN_FEATURES=['p2', 'p3', 'p4', 'p5'], IOU_THRESHOLD=0.5,
        BATCH_SIZE_PER_IMAGE=512, POSITIVE_FRACTION=0.25, POOLER_RESOLUTION=7, POOLER_SAMPLING_RATIO=0,
        BBOX_REG_WEIGHTS=[10.0, 10.0, 5.0, 5.0], SMOOTH_L1_BETA=0.5,
        SCORE_THRESH_TEST=0.05, NMS_THRESH_TEST=0.5, DETECTIONS_PER_IMAGE=100)
    m.ROI_KEYPOINT_HEAD = edict(
        POOLER_RESOLUTION=14,   # keypoint count: DATASET.KEYPOINT.NUM
        NUM_CONVS=8, CONV_DIM=512, LOSS_WEIGHT=1.0)   # GCPose's keys: add_gcpose_config
    return m


def detection_config(exp_dir):
    """Defaults of a GCPose exp (R-50-FPN, COCO person keypoints, Detectron2 3x schedule, 2 images per process)."""
    cfg = base_config(exp_dir)
    cfg.DATASET = _dataset(cfg.ROOT_DIR)
    cfg.INPUT = edict(MIN_SIZE_TRAIN=[640, 672, 704, 736, 768, 800], MAX_SIZE_TRAIN=1333,
                      MIN_SIZE_TEST=800, MAX_SIZE_TEST=1333, PROB_FLIP=0.5,
                      PIXEL_MEAN=[123.675, 116.28, 103.53], PIXEL_STD=[58.395, 57.12, 57.375])  # RGB, 0-255
    # the model zero-pads its input batch to this multiple (FPN needs every level to halve exactly: 32 | it)
    cfg.INPUT.SIZE_DIVISIBILITY = 32
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = True
    cfg.MODEL.update(_model())

    # Detectron2 3x at 8 processes x 2 images (LR 0.02, 270k iterations, steps 210k/250k, warm-up 1000 from
    # 0.001), written per process with the engine's explicit linear scaling (REFERENCE_WORLD_SIZE 8): one
    # process gets LR 0.0025 and 2.16 M iterations with steps 1.68 M / 2.0 M -- exactly the GCPose README
    # schedule -- and its unscaled 1000-iteration warm-up (SCALE_WARMUP False).
    cfg.SOLVER.OPTIMIZER = 'SGD'
    cfg.SOLVER.BASE_LR = 0.0025          # per process; x W processes (0.02 at 8)
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.WEIGHT_DECAY_BIAS = 1e-4
    # Detectron2's SOLVER.WEIGHT_DECAY_NORM 0.0: the GCMs' BatchNorm weights are not decayed (their biases are:
    # Detectron2's 'bias' override wins); FrozenBN has no parameters
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.IMS_PER_GPU = 2
    cfg.SOLVER.MAX_ITER = 270000
    cfg.SOLVER.STEPS = (210000, 250000)
    cfg.SOLVER.GAMMA = 0.1
    cfg.SOLVER.LR_SCHEDULER = 'multistep'
    cfg.SOLVER.WARMUP_ITERS = 1000
    cfg.SOLVER.WARMUP_FACTOR = 0.001
    cfg.SOLVER.WARMUP_METHOD = 'linear'
    cfg.SOLVER.SCALE_WARMUP = False
    cfg.SOLVER.CHECKPOINT_PERIOD = 5000

    cfg.TEST.IMS_PER_GPU = 1
    # No flip TTA, no OKS-NMS, no rescoring (docs/reference/mlpe_hsrnet_gcpose.md §3.4): the detection predictor has no
    # such options, COCO score =
    # box score; TEST.NMS is read by the shared COCO evaluator.
    cfg.TEST.NMS = 'none'
    cfg.TEST.USE_GT_BBOX = False
    # the core has no default for whole-image models: this project's classes (keypoint + person box AP)
    cfg.TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor:DetectionPredictor'
    cfg.TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:DetectionEvaluator'
    return cfg
