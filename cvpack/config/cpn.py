"""The CPN-style preset (MLPE): pytorch-cpn's crop, targets, losses, schedule and decoding.

Values from ``docs/reference/mlpe_hsrnet_gcpose.md`` §1.6-1.9 (MLPE's ``config.py`` / ``test_config.py``);
exps override only what differs (input size, the ablation switches). The model keys of a network on this
pipeline are its project's (MLPE: ``add_mlpe_config`` in projects/MLPE/mlpe/config.py).

Schedule: the original halves the lr at the start of epochs 6, 12, ..., 48 and trains 50 epochs. The preset
sets ``SOLVER.EPOCHS`` / ``SOLVER.STEP_EPOCHS`` / ``CHECKPOINT_EPOCHS``; the engine
(``cvpack.solver.resolve_solver``) turns them into iterations from the train set length (4 replicas per
record: full COCO train2017 = 149813 x 4 = 599252 samples, 18727 iterations per epoch at batch 32).
Set ``SOLVER.EPOCHS None`` to use ``MAX_ITER`` / ``STEPS`` (iterations) as given.
"""
from easydict import EasyDict as edict

from .base import base_config, dark_kernel
from .datasets import dataset_block

CPN_MEAN_RGB = (122.77, 115.95, 102.98)   # pytorch-cpn's pixel mean, RGB, 0-255


def _cpn_dataset(root_dir):
    d = dataset_block('COCO', root_dir, 'cpn')
    d.COLOR_RGB = True
    d.TRAIN = edict(
        X_EXTENTION=0.1, Y_EXTENTION=0.15,   # box grows by (1 + 2 * 0.1) x (1 + 2 * 0.15)
        SCALE=1.25,                          # extra x1.25 at train time only
        NUM_REPLICAS=4,                      # each record 4x with operation 0..3 (plain, flip, rotate, rotate)
        ZOOM_RANGE=[0.7, 1.35],              # a ~ U(.7, 1.35); a >= 1.25 is a no-op
        ROTATION_FACTOR=45,                  # ops 2, 3: +- U(0, 45) degrees
        COLOR_JITTER=[0.8, 1.2],             # per-channel multiply, then clamp to [0, 1]
        GAUSSIAN_KERNELS=[[23, 23], [17, 17], [13, 13], [9, 9]],  # MLPE's config uses these at 256x192 too
    )
    return d


def cpn_config(exp_dir, dataset='COCO', input_shape=(256, 192), ims_per_gpu=32):
    """Data, loss, schedule and test defaults of the MLPE exps (COCO only, as the original); no model keys."""
    if dataset.upper() != 'COCO':
        raise ValueError('the cpn preset covers COCO only (MLPE trained on COCO), got %r' % dataset)
    cfg = base_config(exp_dir)
    cfg.DATASET = _cpn_dataset(cfg.ROOT_DIR)

    # RGB in [0, 1] minus mean / 255, no std division (docs/reference/mlpe_hsrnet_gcpose.md §1.7); STDS kept as ones for
    # a uniform key set
    cfg.INPUT = edict(NORMALIZE=True, MEANS=[m / 255.0 for m in CPN_MEAN_RGB], STDS=[1.0, 1.0, 1.0])
    cfg.INPUT_SHAPE = list(input_shape)
    cfg.OUTPUT_SHAPE = [input_shape[0] // 4, input_shape[1] // 4]

    cfg.MODEL.OUTPUT_NUM = cfg.DATASET.KEYPOINT.NUM

    s = cfg.SOLVER
    s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY = 'Adam', 5e-4, 1e-5
    s.IMS_PER_GPU = ims_per_gpu
    s.LR_SCHEDULER, s.GAMMA = 'multistep', 0.5
    s.WARMUP_ITERS, s.WARMUP_FACTOR = 0, 1.0
    s.EPOCHS = 50
    s.STEP_EPOCHS = list(range(6, 50, 6))          # 6, 12, ..., 48
    s.CHECKPOINT_EPOCHS = 1                        # the original evaluated and saved every epoch
    s.REFERENCE_WORLD_SIZE = None

    cfg.LOSS = edict(OHKM=True, TOPK=8)

    t = cfg.TEST
    t.IMS_PER_GPU = 32
    t.FLIP, t.FLIP_SHIFT = True, False     # flipped maps averaged back without the one-pixel shift
    t.X_EXTENTION, t.Y_EXTENTION = 0.1, 0.15
    cfg.CODEC = 'cpn'                      # Megvii-style targets with CPN's kernels: cvpack.codecs.CPNHeatmap
    t.DECODER, t.GAUSSIAN_KERNEL, t.SHIFT_RATIOS = 'megvii', 21, [0.25]
    t.DARK_KERNEL = dark_kernel(cfg.OUTPUT_SHAPE)  # used with TEST.DECODER 'dark'
    t.USE_GT_BBOX = True                   # the original's default (val with GT boxes, score 1)
    t.DET_FILE = 'det_json/COCO_val2017_detections_AP_H_56_person.json'
    t.DET_SCORE_THRESH = 0.0
    t.NMS, t.NMS_THRESH = 'none', 0.9      # no OKS-NMS in the original
    t.RESCORE = 'megvii'                   # box score x mean keypoint confidence
    t.KEYPOINT_THRESH = 0.2
    return cfg
