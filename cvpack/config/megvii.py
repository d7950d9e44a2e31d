"""The Megvii top-down preset (RSN, MSPN): the original ``config.py`` + ``dataset/attribute.py`` values.

Every number below is the original's (``docs/reference/rsn_mspn.md`` §2); exps override only what differs.
"""
from easydict import EasyDict as edict

from .base import base_config, dark_kernel
from .datasets import dataset_block


def _coco_dataset(root_dir):
    d = dataset_block('COCO', root_dir, 'megvii')
    d.COLOR_RGB = False
    d.TRAIN = edict(
        BASIC_EXTENTION=0.05, RANDOM_EXTENTION=True, X_EXTENTION=0.6, Y_EXTENTION=0.8,
        SCALE_FACTOR_LOW=-0.25, SCALE_FACTOR_HIGH=0.25, SCALE_SHRINK_RATIO=0.8,
        ROTATION_FACTOR=45, PROB_ROTATION=0.5, PROB_FLIP=0.5,
        NUM_KEYPOINTS_HALF_BODY=3, PROB_HALF_BODY=0.3, X_EXTENTION_HALF_BODY=0.6, Y_EXTENTION_HALF_BODY=0.8,
        HALF_BODY_DRAW='megvii',   # 'megvii' = np.random.randn() < 0.5 (~69 % upper, the original); 'uniform' = 50 %
        # True = the original's int64 COCO joints: transformed joints truncated toward zero, so one landing in
        # (-1, 0) or (W-1, W) stays valid at the border cell; False = float joints (docs/reference/defects.md F#2)
        INTEGER_JOINTS=True,
        GAUSSIAN_KERNELS=[[15, 15], [11, 11], [9, 9], [7, 7], [5, 5]],
    )
    return d


def _mpii_dataset(root_dir):
    d = _coco_dataset(root_dir)   # the Megvii MPII attributes start from COCO's and override
    d.update(dataset_block('MPII', root_dir, 'megvii'))
    d.TRAIN.update(
        BASIC_EXTENTION=0.0, RANDOM_EXTENTION=False, X_EXTENTION=0.25, Y_EXTENTION=0.25,
        SCALE_SHRINK_RATIO=1.0, ROTATION_FACTOR=60, NUM_KEYPOINTS_HALF_BODY=8, PROB_HALF_BODY=0.5,
        X_EXTENTION_HALF_BODY=0.6, Y_EXTENTION_HALF_BODY=0.6,
        INTEGER_JOINTS=False,   # the original's MPII joints come from float JSON values: nothing truncated
    )
    return d


def megvii_config(exp_dir, dataset='COCO'):
    """Defaults of the original RSN/MSPN exps for ``dataset`` ('COCO' or 'MPII')."""
    cfg = base_config(exp_dir)
    coco = dataset.upper() == 'COCO'
    cfg.DATASET = _coco_dataset(cfg.ROOT_DIR) if coco else _mpii_dataset(cfg.ROOT_DIR)

    cfg.INPUT = edict(NORMALIZE=True, MEANS=[0.406, 0.456, 0.485], STDS=[0.225, 0.224, 0.229])  # BGR order
    cfg.INPUT_SHAPE = [256, 192] if coco else [256, 256]   # (h, w)
    cfg.OUTPUT_SHAPE = [64, 48] if coco else [64, 64]

    cfg.MODEL.BACKBONE = 'Res-50'          # used now (docs/reference/defects.md R#20): encoder type, see
                                           # cvpack.modeling.multistage.BACKBONES
    cfg.MODEL.BLOCKS = None                # blocks per layer, e.g. [3, 4, 6, 3]; None = the backbone's own
    cfg.MODEL.PRM = False                  # Pose Refine Machine on each stage's finest heatmap (no released exp)
    cfg.MODEL.ZERO_INIT_RESIDUAL = False   # zero the last BN of each residual branch (docs/reference/defects.md R#10:
                                           # crashed in the original)
    # conv bias before every BN (original); False = mmpose's layout (imported weights)
    cfg.MODEL.CONV_BIAS = True
    cfg.MODEL.UPSAMPLE_CHANNEL_NUM = 256
    cfg.MODEL.STAGE_NUM = 1
    # An original key that the original code never read either (the joint count comes from
    # DATASET.KEYPOINT.NUM); kept for config compatibility, always equal to it.
    cfg.MODEL.OUTPUT_NUM = cfg.DATASET.KEYPOINT.NUM

    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8   # the original's implicit 8-GPU scaling, made explicit
    cfg.SOLVER.SCALE_ROUNDING = 'floor'   # ... with its int(x * 8 / num_gpu) (docs/reference/defects.md F#5)
    if not coco:
        cfg.SOLVER.CHECKPOINT_PERIOD = 1600
        cfg.SOLVER.MAX_ITER = 28800
        cfg.RUN_EFFICIENT = True

    # MASK 'megvii' = target-only v>1 mask on coarse levels (original); 'mmpose' = v>0 on both
    cfg.LOSS = edict(OHKM=True, TOPK=8, COARSE_TO_FINE=True, MASK='megvii')

    cfg.TEST.FLIP = True
    cfg.TEST.FLIP_SHIFT = False            # the original did not shift the flipped heatmap
    cfg.TEST.X_EXTENTION = 0.09 if coco else 0.25
    cfg.TEST.Y_EXTENTION = 0.135 if coco else 0.25
    cfg.TEST.SHIFT_RATIOS = [0.25]
    cfg.TEST.GAUSSIAN_KERNEL = 5 if coco else 9
    cfg.CODEC = 'megvii'                   # targets + decoders + score rule: cvpack.codecs.MegviiHeatmap
    cfg.TEST.DECODER = 'megvii'            # within the codec: megvii | mmpose_megvii | quarter | dark | argmax
    cfg.TEST.DARK_KERNEL = dark_kernel(cfg.OUTPUT_SHAPE)  # 'dark' blur; exps changing OUTPUT_SHAPE reset it
    cfg.TEST.USE_GT_BBOX = not coco        # COCO: person detections, as the original
    cfg.TEST.DET_FILE = 'det_json/COCO_val2017_detections_AP_H_56_person.json' if coco else ''
    cfg.TEST.DET_SCORE_THRESH = 0.0
    cfg.TEST.RESCORE = 'megvii'            # 'megvii' = det score x mean keypoint score; 'simple_baselines'
    cfg.TEST.KEYPOINT_THRESH = 0.2         # used by 'simple_baselines' rescoring
    return cfg
