"""The Simple Baselines preset (HSRNet / HSR-MSNet): the original yaml + library values.

Values from ``docs/reference/mlpe_hsrnet_gcpose.md`` §2.6-2.7 (HSRNet yamls, Simple Baselines library).
Differences from the Megvii preset: the ImageNet mean/std listed in RGB order but applied to the BGR planes
(the original never converts ``cv2.imread``'s BGR; docs/reference/defects.md F#17), centre/scale with the
x1.25 box padding and aspect fit at load time (``_box2cs``), Gaussian targets with peak 1, no half body,
Adam 1e-3 without weight decay, x0.1 at epochs 90 and 120 of 140.

Epoch-based schedule. The original counts epochs; the cvpack engine counts iterations. ``SOLVER.EPOCHS``
and ``SOLVER.STEP_EPOCHS`` hold the original numbers; the engine (``cvpack.solver.resolve_solver``) converts
them to ``MAX_ITER`` / ``STEPS`` / ``CHECKPOINT_PERIOD`` once the train set size and world size are known, with
``iters_per_epoch = ceil(num_samples / (IMS_PER_GPU * world_size))`` (the original DataLoader kept the last
partial batch). Set ``SOLVER.EPOCHS = None`` to use MAX_ITER/STEPS as given.
"""

from easydict import EasyDict as edict

from .base import base_config, dark_kernel
from .datasets import dataset_block

__all__ = ['simple_baselines_config']


def _coco_dataset(root_dir, sigma):
    d = dataset_block('COCO', root_dir, 'simple_baselines')
    d.BBOX_PADDING = 1.25          # _box2cs: scale x1.25 after the aspect fit (train GT and test boxes)
    # BGR, as the original: JointsDataset feeds cv2.imread's BGR pixels to torchvision's Normalize with the RGB-ordered
    # ImageNet statistics (docs/reference/defects.md F#17); True gives RGB input with the same INPUT.MEANS/STDS
    d.COLOR_RGB = False
    d.TRAIN = edict(
        SCALE_FACTOR=0.3,          # s *= clip(N(1, 0.3), 0.7, 1.3)
        ROTATION_FACTOR=40,        # r = clip(N(0, 40), -80, 80) degrees ...
        PROB_ROTATION=0.6,         # ... with probability 0.6, else 0
        FLIP=True, PROB_FLIP=0.5,
        SIGMA=sigma,               # Gaussian sigma in heatmap cells: 2 at 256x192, 3 at 384x288
    )
    return d


def simple_baselines_config(exp_dir, input_shape=(256, 192)):
    """Defaults of the HSRNet yamls for COCO at ``input_shape`` (h, w): (256, 192) or (384, 288)."""
    cfg = base_config(exp_dir)
    input_shape = [int(v) for v in input_shape]
    big = input_shape[0] >= 384
    cfg.DATASET = _coco_dataset(cfg.ROOT_DIR, sigma=3 if big else 2)

    # ImageNet's RGB-ordered statistics, applied to channels 0, 1, 2 = B, G, R (the original's Normalize on BGR input)
    cfg.INPUT = edict(NORMALIZE=True, MEANS=[0.485, 0.456, 0.406], STDS=[0.229, 0.224, 0.225])
    cfg.INPUT_SHAPE = input_shape
    cfg.OUTPUT_SHAPE = [v // 4 for v in input_shape]

    cfg.MODEL.BACKBONE = 'HSRNet-59'

    cfg.SOLVER.OPTIMIZER = 'Adam'
    cfg.SOLVER.BASE_LR = 1e-3
    cfg.SOLVER.WEIGHT_DECAY = 0.0      # the yaml's WD 1e-4 never reached Simple Baselines' Adam
    cfg.SOLVER.LR_SCHEDULER = 'multistep'
    cfg.SOLVER.GAMMA = 0.1
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.REFERENCE_WORLD_SIZE = None   # one P100 in the original: no implicit GPU scaling
    cfg.SOLVER.IMS_PER_GPU = 32
    cfg.SOLVER.EPOCHS = 140                  # converted to iterations by the engine (module docstring)
    cfg.SOLVER.STEP_EPOCHS = [90, 120]
    cfg.SOLVER.CHECKPOINT_EPOCHS = 1         # the original saved every epoch

    cfg.LOSS = edict(USE_TARGET_WEIGHT=True)  # JointsMSELoss: mean over joints of 0.5 * MSE(pred * w, gt * w)

    cfg.TEST.FLIP = True
    cfg.TEST.FLIP_SHIFT = True            # flipped heatmap shifted right by one column
    cfg.CODEC = 'msra'                    # unit Gaussian targets: cvpack.codecs.MSRAHeatmap
    cfg.TEST.DECODER = 'quarter'          # within the codec: 'quarter' | 'dark' | 'argmax'
    cfg.TEST.DARK_KERNEL = dark_kernel(cfg.OUTPUT_SHAPE)  # used with TEST.DECODER 'dark'
    cfg.TEST.USE_GT_BBOX = False
    cfg.TEST.DET_FILE = 'det_json/COCO_val2017_detections_AP_H_56_person.json'
    cfg.TEST.DET_SCORE_THRESH = 0.0       # IMAGE_THRE
    cfg.TEST.KEYPOINT_THRESH = 0.2        # IN_VIS_THRE
    cfg.TEST.NMS = 'oks'
    cfg.TEST.NMS_THRESH = 0.9
    cfg.TEST.RESCORE = 'simple_baselines'
    return cfg

