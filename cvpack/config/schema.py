"""Declarative constraints on the core config keys, checked whenever a config is resolved.

:func:`cvpack.config.merge_from_list` (used by train.py / test.py through ``resolve_cfg``, by ``config.py`` and by
``load_exp``) calls :func:`validate_config` after the overrides, so a bad value fails at start-up with the key
and the value named, not later in ``range()``, in the collate function or in torch's optimizer. The values
an exp's ``config.py`` sets are checked the same way.

One line per key in :data:`SCHEMA`; a key missing from a config (another pipeline's) is not checked, and keys
that are not listed (projects' own) keep only the type rule of the override parser. To constrain a new core
key, add one line here, e.g. ``'DIST.TIMEOUT_S': Float(gt=0)``. Rules between keys (``LOAD_MIN_NUM <=
KEYPOINT.NUM``, ``TEST.DECODER`` one of ``CODEC``'s decoders) are rows of :data:`CROSS_CHECKS`, checked after the
single-key rules. Every error names the full key (``config key TEST.GAUSSIAN_KERNEL: 4 is even (...)``).
"""
import math
import re

__all__ = ['ConfigError', 'Int', 'Float', 'Bool', 'Str', 'Choice', 'Device', 'Seq', 'SCHEMA', 'CROSS_CHECKS',
           'validate_config']


class ConfigError(ValueError):
    """A config value of the wrong type, out of range or not finite; the message names the key and the value."""


class Rule:
    """Base: ``check(key, value)`` returns the value (possibly normalised) or raises ConfigError.
    ``none=True`` lets the key be None (its documented "off" / "same as" value)."""

    def __init__(self, none=False):
        self.none = none

    def check(self, key, value):
        if value is None:
            if self.none:
                return None
            raise ConfigError('config key %s: None is not allowed (%s)' % (key, self.describe()))
        return self._check(key, value)

    def fail(self, key, value, why):
        raise ConfigError('config key %s: %r %s (%s)' % (key, value, why, self.describe()))


class _Number(Rule):
    """Numbers with optional bounds: ``ge``/``gt`` (lower), ``le``/``lt`` (upper). Booleans are not numbers."""

    kind = 'number'

    def __init__(self, ge=None, gt=None, le=None, lt=None, none=False):
        super().__init__(none)
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def describe(self):
        bounds = [op + ' %g' % v for op, v in (('>=', self.ge), ('>', self.gt), ('<=', self.le), ('<', self.lt))
                  if v is not None]
        return 'expected a finite %s%s%s' % (self.kind, ' ' if bounds else '', ' and '.join(bounds)) + \
            (', or None' if self.none else '')

    def _check(self, key, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, value, 'is a %s' % type(value).__name__)
        if not math.isfinite(value):
            self.fail(key, value, 'is not finite')
        value = self._convert(key, value)
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)):
            self.fail(key, value, 'is out of range')
        return value

    def _convert(self, key, value):
        return value


class Int(_Number):
    """An integer; an integral float (``1e5`` on the command line) becomes an int, ``2.5`` is an error.
    ``odd=True``: a Gaussian / blur kernel size (``cv2.GaussianBlur`` needs odd sizes; an even one fails deep in
    the data loader or the decoder)."""

    kind = 'integer'

    def __init__(self, ge=None, gt=None, le=None, lt=None, none=False, odd=False):
        super().__init__(ge, gt, le, lt, none)
        self.odd = odd
        if odd:
            self.kind = 'odd integer'

    def _convert(self, key, value):
        if isinstance(value, float):
            if not value.is_integer():
                self.fail(key, value, 'is not an integer')
            value = int(value)
        if self.odd and value % 2 == 0:
            self.fail(key, value, 'is even')
        return value


class Float(_Number):
    """A real number (an int is accepted as it is)."""

    kind = 'number'


class Bool(Rule):
    def describe(self):
        return 'expected true or false'

    def _check(self, key, value):
        if not isinstance(value, bool):
            self.fail(key, value, 'is a %s' % type(value).__name__)
        return value


class Str(Rule):
    """A string; ``none=True`` when None is its documented "off" value (``MODEL.WEIGHT None``: from scratch)."""

    def describe(self):
        return 'expected a string' + (', or None' if self.none else '')

    def _check(self, key, value):
        if not isinstance(value, str):
            self.fail(key, value, 'is a %s' % type(value).__name__)
        return value


class Choice(Rule):
    """One of ``choices``, compared as the code that reads the key compares: exactly (``TEST.NMS 'OKS'`` is an
    error, as it would be in ``nms_per_image``), or ignoring case with ``ignore_case=True`` where that code
    lower-cases the value first (SOLVER.OPTIMIZER, the AMP modes); the value is kept as written."""

    def __init__(self, *choices, none=False, ignore_case=False):
        super().__init__(none)
        self.choices, self.ignore_case = choices, ignore_case

    def describe(self):
        return 'expected one of %s%s' % (', '.join(repr(c) for c in self.choices),
                                         ' (any case)' if self.ignore_case else '')

    def _check(self, key, value):
        fold = (lambda v: v.lower()) if self.ignore_case else (lambda v: v)
        if not isinstance(value, str) or fold(value) not in [fold(c) for c in self.choices]:
            self.fail(key, value, 'is not allowed')
        return value


class Device(Rule):
    """``MODEL.DEVICE``: what :func:`cvpack.engine.launch.resolve_device` accepts ('auto', 'cpu', 'cuda', 'cuda:N',
    any case; None means 'auto' there too), checked at resolution instead of when the device is set up."""

    def describe(self):
        return "expected 'auto' (or None), 'cpu', 'cuda' or 'cuda:N'"

    def _check(self, key, value):
        if not isinstance(value, str) or not re.fullmatch(r'auto|cpu|cuda(:[0-9]+)?', value.strip().lower()):
            self.fail(key, value, 'is not a device')
        return value


class Seq(Rule):
    """A list/tuple whose items all follow ``item`` (and of ``length`` items when given)."""

    def __init__(self, item, length=None, none=False):
        super().__init__(none)
        self.item, self.length = item, length

    def describe(self):
        return 'expected a list of %sitems, each %s' % ('%d ' % self.length if self.length else '',
                                                         self.item.describe().replace('expected ', ''))

    def _check(self, key, value):
        if not isinstance(value, (list, tuple)):
            self.fail(key, value, 'is a %s, not a list' % type(value).__name__)
        if self.length is not None and len(value) != self.length:
            self.fail(key, value, 'has %d items' % len(value))
        items = [self.item.check('%s[%d]' % (key, i), v) for i, v in enumerate(value)]
        return type(value)(items)


_AMP = Choice('none', 'fp16', 'bf16', 'off', 'false', '', none=True, ignore_case=True)   # engine.utils.amp_dtype
_PROB = Float(ge=0, le=1)
_KERNEL = Int(ge=1, odd=True)          # a Gaussian blur size (cv2.GaussianBlur)
_RGB = Seq(Float(), length=3)          # one value per colour channel

SCHEMA = {
    'SEED': Int(ge=0),
    'RUN_EFFICIENT': Bool(),
    'DATALOADER.NUM_WORKERS': Int(ge=0),
    'DATALOADER.ASPECT_RATIO_GROUPING': Bool(),
    'DIST.TIMEOUT_S': Float(gt=0),
    'TENSORBOARD_DIR': Str(none=True),      # None (or '') = no TensorBoard events
    'MODEL.WEIGHT': Str(none=True),         # None = from scratch
    'MODEL.PRETRAINED': Str(none=True),     # None = no ImageNet initialisation
    'MODEL.BLOCKS': Seq(Int(ge=1), none=True),   # None = the backbone's own
    'MODEL.DEVICE': Device(none=True),              # cvpack.engine.launch.resolve_device
    'MODEL.SYNC_BN': Bool(),
    'MODEL.CHANNELS_LAST': Bool(),
    'MODEL.FIND_UNUSED_PARAMETERS': Bool(),
    # solver (cvpack.solver): LR and iteration counts
    'SOLVER.OPTIMIZER': Choice('Adam', 'AdamW', 'SGD', ignore_case=True),   # solver.optim lower-cases it
    'SOLVER.BASE_LR': Float(ge=0),          # 0 freezes the weights (tests, BN-statistics runs); < 0 is an error
    'SOLVER.BETAS': Seq(Float(ge=0, lt=1), length=2),
    'SOLVER.MOMENTUM': Float(ge=0, le=1),
    'SOLVER.NESTEROV': Bool(),
    'SOLVER.FUSED': Bool(),
    'SOLVER.WEIGHT_DECAY': Float(ge=0),
    'SOLVER.WEIGHT_DECAY_BIAS': Float(ge=0, none=True),
    'SOLVER.WEIGHT_DECAY_NORM': Float(ge=0, none=True),
    'SOLVER.IMS_PER_GPU': Int(ge=1),
    'SOLVER.MAX_ITER': Int(ge=1),
    'SOLVER.CHECKPOINT_PERIOD': Int(ge=1),
    'SOLVER.LR_SCHEDULER': Choice('megvii_linear', 'multistep', 'cosine'),
    'SOLVER.WARMUP_FACTOR': Float(ge=0, le=1),
    'SOLVER.WARMUP_ITERS': Int(ge=0),
    'SOLVER.WARMUP_METHOD': Choice('linear', 'constant'),
    'SOLVER.GAMMA': Float(gt=0),
    'SOLVER.STEPS': Seq(Int(ge=0)),
    'SOLVER.REFERENCE_WORLD_SIZE': Int(ge=1, none=True),
    'SOLVER.SCALE_WARMUP': Bool(),
    'SOLVER.SCALE_ROUNDING': Choice('round', 'floor'),
    'SOLVER.EPOCHS': Int(ge=1, none=True),
    'SOLVER.STEP_EPOCHS': Seq(Float(ge=0), none=True),
    'SOLVER.WARMUP_EPOCHS': Float(ge=0, none=True),
    'SOLVER.CHECKPOINT_EPOCHS': Int(ge=1, none=True),
    'SOLVER.AMP': _AMP,
    'SOLVER.LOG_PERIOD': Int(ge=1),
    'SOLVER.CLIP_GRAD_NORM': Float(gt=0, none=True),
    'SOLVER.ACCUMULATE': Int(ge=1),
    # test loop
    'CODEC': Choice('megvii', 'cpn', 'msra'),   # cvpack.codecs.CODECS (a test keeps the two in sync)
    'TEST.IMS_PER_GPU': Int(ge=1),
    'TEST.AMP': _AMP,
    'TEST.COMPILE': Bool(),
    'TEST.FLIP': Bool(),
    'TEST.USE_GT_BBOX': Bool(),
    'TEST.DET_SCORE_THRESH': Float(ge=0),
    'TEST.NMS_THRESH': Float(gt=0, le=1),
    'TEST.KEYPOINT_THRESH': _PROB,
    'TEST.NMS': Choice('none', 'oks', 'soft_oks'),                       # evaluation.nms.nms_per_image
    'TEST.RESCORE': Choice('megvii', 'simple_baselines', 'none'),        # inference.rescore.rescore
    # decode.heatmap.DECODERS (a test keeps the two in sync); which of them fit CODEC: CROSS_CHECKS
    'TEST.DECODER': Choice('megvii', 'mmpose_megvii', 'quarter', 'dark', 'argmax'),
    'TEST.GAUSSIAN_KERNEL': _KERNEL,
    'TEST.DARK_KERNEL': _KERNEL,
    'TEST.SHIFT_RATIOS': Seq(Float(ge=0), length=1),                     # decode.heatmap.decoder_kwargs: [0]
    # losses
    'LOSS.TOPK': Int(ge=1),                # OHKM: the hardest TOPK joints (all of them when fewer: losses.ohkm)
    'LOSS.MASK': Choice('megvii', 'mmpose'),                             # modeling.losses.megvii
    # proposal counts of the whole-image detectors (GCPose's detectron2-style keys)
    'MODEL.RPN.PRE_NMS_TOPK_TRAIN': Int(ge=1),
    'MODEL.RPN.PRE_NMS_TOPK_TEST': Int(ge=1),
    'MODEL.RPN.POST_NMS_TOPK_TRAIN': Int(ge=1),
    'MODEL.RPN.POST_NMS_TOPK_TEST': Int(ge=1),
    'TEST.MAX_IMAGES': Int(ge=0),
    'TEST.PCKH_GT': Str(),
    'TEST.EVAL_PERIOD': Int(ge=0),
    # data presets (cvpack.config.datasets and the pipelines' presets)
    'INPUT_SHAPE': Seq(Int(ge=1), length=2),
    'OUTPUT_SHAPE': Seq(Int(ge=1), length=2),
    'DATASET.PIXEL_STD': Float(gt=0),
    'DATASET.BBOX_PADDING': Float(gt=0),
    'DATASET.COLOR_RGB': Bool(),
    'DATASET.IMAGE_CACHE': Str(none=True),      # data.image_cache; '' or None = off
    'DATASET.KEYPOINT.NUM': Int(ge=1),     # = the metadata's count (config.datasets.refresh_dataset_keys)
    'DATASET.KEYPOINT.LOAD_MIN_NUM': Int(ge=0),   # <= DATASET.KEYPOINT.NUM: CROSS_CHECKS
    'DATASET.TRAIN.GAUSSIAN_KERNELS': Seq(Seq(_KERNEL, length=2)),      # Megvii / CPN targets, one [kh, kw] per level
    'DATASET.TRAIN.HALF_BODY_DRAW': Choice('megvii', 'uniform'),        # data.topdown
    'DATASET.TRAIN.NUM_KEYPOINTS_HALF_BODY': Int(ge=0),
    'DATASET.TRAIN.ROTATION_FACTOR': Float(ge=0),   # degrees; presets write ints (40), 22.5 is as valid
    'INPUT.MEANS': _RGB,
    'INPUT.STDS': Seq(Float(gt=0), length=3),
    'INPUT.PIXEL_MEAN': _RGB,              # whole-image pipelines (GCPose), 0-255
    'INPUT.PIXEL_STD': Seq(Float(gt=0), length=3),
    'DATASET.TRAIN.PROB_FLIP': _PROB,
    'DATASET.TRAIN.PROB_ROTATION': _PROB,
    'DATASET.TRAIN.PROB_HALF_BODY': _PROB,
    'DATASET.TRAIN.INTEGER_JOINTS': Bool(),
    'DATASET.TRAIN.SIGMA': Float(gt=0),
}


def _at_most(bound, why):
    """A cross check ``a <= b``, ``b`` the value of the key ``bound``; ``why`` says what goes wrong otherwise."""
    def check(a, b):
        return None if a <= b else '%r is more than %s = %r (%s)' % (a, bound, b, why)
    return check


def _decoder_fits_codec(decoder, codec):
    """TEST.DECODER must be one of CODEC's decoders (:meth:`cvpack.codecs.HeatmapCodec.check_decoder`): checked here
    at resolution, not first when the dataset or predictor builds the codec."""
    from ..codecs.heatmap import CODECS
    if codec not in CODECS:
        return None                    # the CODEC rule names it
    try:
        CODECS[codec].check_decoder(decoder)
    except (KeyError, ValueError) as e:
        return str(e.args[0])
    return None


# Rules between keys: (keys, check(*values) -> None or what is wrong). Checked after every single-key rule, and
# only when the config has all the keys. The error names the first key.
CROSS_CHECKS = [
    (('DATASET.KEYPOINT.LOAD_MIN_NUM', 'DATASET.KEYPOINT.NUM'),
     _at_most('DATASET.KEYPOINT.NUM', 'a person has no more keypoints: every record would be dropped')),
    (('TEST.DECODER', 'CODEC'), _decoder_fits_codec),
]


def _lookup(cfg, key):
    """``(node, name)`` of a dotted key of ``cfg``: ``node[name]`` is its value; node None when the config lacks it."""
    node, parts = cfg, key.split('.')
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return (node, parts[-1]) if isinstance(node, dict) and parts[-1] in node else (None, parts[-1])


def validate_config(cfg, schema=None, cross_checks=None):
    """Check every key of ``schema`` (default :data:`SCHEMA`) present in ``cfg``, then every rule of
    ``cross_checks`` (default :data:`CROSS_CHECKS`) whose keys are all present; normalised values (an integral
    float for an int key) are written back. Raises :class:`ConfigError` naming the key and value."""
    for key, rule in (SCHEMA if schema is None else schema).items():
        node, name = _lookup(cfg, key)
        if node is None:
            continue
        old = node[name]
        new = rule.check(key, old)
        if repr(new) != repr(old):     # written back only when normalised (2.0 -> 2, also inside lists)
            node[name] = new
    for keys, check in (CROSS_CHECKS if cross_checks is None else cross_checks):
        found = [_lookup(cfg, k) for k in keys]
        if all(node is not None for node, _ in found):
            why = check(*[node[name] for node, name in found])
            if why:
                raise ConfigError('config key %s: %s' % (keys[0], why))
    return cfg
