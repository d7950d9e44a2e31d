"""Config defaults shared by every pipeline, overrides from the command line, and the ``-log`` helper."""
import argparse
import ast
import copy
import getpass
import json
import math
import os
import os.path as osp
import sys

from easydict import EasyDict as edict

from ..fileio import atomic_output
from .argv import parse_overrides, usage_error
from .datasets import refresh_dataset_keys
from .schema import SCHEMA, Choice, ConfigError, validate_config


def find_repo_root(start):
    """Return the first folder at or above ``start`` holding both ``cvpack/`` and ``projects/``.

    Falls back to ``start`` itself, so an exp folder copied elsewhere still gets a valid OUTPUT_DIR.
    """
    path = osp.abspath(start)
    while True:
        if osp.isdir(osp.join(path, 'cvpack')) and osp.isdir(osp.join(path, 'projects')):
            return path
        parent = osp.dirname(path)
        if parent == path:
            return osp.abspath(start)
        path = parent


def _user():
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still a usable name
        return 'user'


def base_config(exp_dir):
    """Keys every exp has, independent of the data pipeline.

    Args:
        exp_dir: the exp folder (the one holding ``config.py``); its base name is the exp name.

    Returns:
        EasyDict with the original top-level keys. Paths are absolute; nothing is created.
    """
    exp_dir = osp.realpath(exp_dir)
    cfg = edict()
    cfg.EXP_DIR = exp_dir
    cfg.EXP_NAME = osp.basename(exp_dir)
    cfg.USER = _user()
    cfg.ROOT_DIR = find_repo_root(exp_dir)
    cfg.OUTPUT_DIR = osp.join(cfg.ROOT_DIR, 'model_logs', cfg.USER, cfg.EXP_NAME)
    cfg.TEST_DIR = osp.join(cfg.OUTPUT_DIR, 'test_dir')
    cfg.TENSORBOARD_DIR = osp.join(cfg.OUTPUT_DIR, 'tb_dir')
    cfg.SEED = 0

    cfg.DATALOADER = edict(NUM_WORKERS=4, ASPECT_RATIO_GROUPING=False)
    # Seconds a collective waits for the other ranks before the job fails: a hung rank (SIGSTOP, a stuck
    # file system) ends the job after this long instead of never. Long enough for rank 0 to write a large
    # checkpoint or download pretrained weights while the others wait (docs/ENGINE.md "Hung ranks").
    cfg.DIST = edict(TIMEOUT_S=1800)

    cfg.MODEL = edict()
    cfg.MODEL.DEVICE = 'auto'          # 'auto' = cuda when available, else cpu; or 'cpu' / 'cuda'
    cfg.MODEL.WEIGHT = None            # initial weights (ours or an original repo's checkpoint); None = from scratch
    cfg.MODEL.PRETRAINED = None        # ImageNet backbone weights: local path or URL (torchvision-format keys)
    cfg.MODEL.WEIGHT_FORMATS = {}      # project weight formats {name: 'python.module'} (cvpack.weights)
    cfg.MODEL.SYNC_BN = False          # convert BatchNorm to SyncBatchNorm when distributed
    cfg.MODEL.CHANNELS_LAST = True      # NHWC activations: 1.13x per training step, 1.4x at test on CPU (docs/SPEED.md)
    cfg.MODEL.FIND_UNUSED_PARAMETERS = False  # DDP option, for models with parameters unused in a step

    cfg.SOLVER = edict()
    cfg.SOLVER.OPTIMIZER = 'Adam'      # 'Adam' or 'SGD' (the original SGD branch could never be chosen)
    cfg.SOLVER.BASE_LR = 5e-4
    cfg.SOLVER.BETAS = (0.9, 0.999)
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.NESTEROV = False        # SGD only (cvpack.solver.build_optimizer)
    cfg.SOLVER.FUSED = True            # torch's fused optimizer kernel where the parameters allow it
    cfg.SOLVER.WEIGHT_DECAY = 1e-5
    cfg.SOLVER.WEIGHT_DECAY_BIAS = None  # None = same as WEIGHT_DECAY (the original decayed biases and BN too)
    cfg.SOLVER.WEIGHT_DECAY_NORM = None  # a number: Detectron2's rule, norm-layer weights decay by it (detection)
    cfg.SOLVER.IMS_PER_GPU = 32
    cfg.SOLVER.MAX_ITER = 96000
    cfg.SOLVER.CHECKPOINT_PERIOD = 2400
    cfg.SOLVER.LR_SCHEDULER = 'megvii_linear'  # 'megvii_linear' | 'multistep' | 'cosine'
    cfg.SOLVER.WARMUP_FACTOR = 0.1
    cfg.SOLVER.WARMUP_ITERS = 2400
    cfg.SOLVER.WARMUP_METHOD = 'linear'  # 'linear' | 'constant'
    cfg.SOLVER.GAMMA = 0.5             # multistep decay factor
    cfg.SOLVER.STEPS = ()              # multistep milestones, in iterations
    # The original multiplied BASE_LR by the number of GPUs and MAX_ITER / CHECKPOINT_PERIOD by
    # 8/num_gpu, silently. Here the same rule is explicit: with REFERENCE_WORLD_SIZE = R and W
    # processes, LR = BASE_LR * W and the iteration counts are scaled by R / W. None disables scaling.
    cfg.SOLVER.REFERENCE_WORLD_SIZE = None
    cfg.SOLVER.SCALE_WARMUP = True     # scale WARMUP_ITERS with R / W too (the original did not:
                                       # docs/reference/defects.md R#22)
    # How scaled iteration counts become integers: 'round' = int(round(x * R / W)) (Detectron2's auto-scaling);
    # 'floor' = int(x * R / W), the Megvii train.py's int(x * 8 / num_gpu) (docs/reference/defects.md F#5)
    cfg.SOLVER.SCALE_ROUNDING = 'round'
    # Epoch-based presets (Simple Baselines) set EPOCHS: MAX_ITER, STEPS, WARMUP_ITERS and CHECKPOINT_PERIOD
    # are then derived from len(train set), IMS_PER_GPU and the world size (cvpack.solver.resolve_solver).
    cfg.SOLVER.EPOCHS = None
    cfg.SOLVER.STEP_EPOCHS = None
    cfg.SOLVER.WARMUP_EPOCHS = None
    cfg.SOLVER.CHECKPOINT_EPOCHS = 1
    cfg.SOLVER.AMP = 'none'            # 'none' | 'fp16' (CUDA) | 'bf16' (CUDA or CPU autocast)
    cfg.SOLVER.LOG_PERIOD = 20
    cfg.SOLVER.CLIP_GRAD_NORM = None
    cfg.SOLVER.ACCUMULATE = 1          # micro-batches per optimizer step (gradient accumulation, docs/ENGINE.md)

    # The dataset keys the engine reads whatever the pipeline; a preset replaces the block with the full one of its
    # dataset (cvpack/config/datasets.py dataset_block), a project with a new pipeline adds its own keys to it.
    cfg.DATASET = edict(NAME='', PIPELINE='', CLASS='', COMBINE=[])

    cfg.LOSS = edict()
    cfg.RUN_EFFICIENT = False          # activation checkpointing (non-reentrant: no double BN update)

    cfg.TEST = edict()
    cfg.TEST.IMS_PER_GPU = 32
    # 'module:Class' of a project's own predictor / evaluator (built as Class(cfg)); '' = the pipeline's default
    cfg.TEST.PREDICTOR = ''
    cfg.TEST.EVALUATOR = ''
    cfg.TEST.AMP = 'none'              # autocast for the test forward: 'none' | 'fp16' (CUDA) | 'bf16'
    cfg.TEST.COMPILE = False           # torch.compile + freezing for the test forward (cvpack.inference.compile)
    cfg.TEST.NMS = 'none'              # per-image NMS before COCO evaluation: 'none' (original) | 'oks' | 'soft_oks'
    cfg.TEST.NMS_THRESH = 0.9
    cfg.TEST.DET_FILE = ''             # person detections below DATASET.ROOT (top-down pipelines); '' = none
    cfg.TEST.USE_GT_BBOX = False       # test on the annotated boxes instead of DET_FILE (top-down pipelines)
    cfg.TEST.MAX_IMAGES = 0            # test (and evaluate during training) on the first N val images; 0 = all
    # MPII PCKh: head boxes below DATASET.ROOT (gt_valid.mat, the records of VAL_ANN in its order), the protocol's
    # normaliser; '' = VAL_ANN's own (its "headbox" entries, else head segments: docs/ENGINE.md "MPII PCKh")
    cfg.TEST.PCKH_GT = ''
    # evaluation during training (docs/ENGINE.md): every EVAL_PERIOD optimizer steps, or epochs when SOLVER.EPOCHS
    # is set (0 = off), the test pipeline
    # runs on the val split; OUTPUT_DIR/best.pth keeps the best BEST_METRIC ('' = 'AP' (COCO), else 'Mean' (MPII))
    cfg.TEST.EVAL_PERIOD = 0
    cfg.TEST.BEST_METRIC = ''
    return cfg


def dark_kernel(output_shape):
    """``TEST.DARK_KERNEL`` (the DARK decoder's Gaussian blur, odd) for a heatmap size (h, w).

    mmpose's DARK configs: 11 at 64x48 (sigma 2) and 17 at 96x72 (sigma 3), i.e. about 6 * sigma - 1 with the
    sigma growing with the heatmap; heatmaps 96 rows or taller get 17, smaller ones 11.
    """
    return 17 if int(output_shape[0]) >= 96 else 11


def _nullable(key, old):
    """Whether ``KEY None`` may clear ``key``: its schema rule says so (``none=True``); a key the schema does not list
    (a project's) only when its value is None already."""
    rule = SCHEMA.get(key)
    return rule.none if rule is not None else old is None


def _is_choice(key, text):
    """Whether ``text`` is one of the choices of ``key``'s schema rule, compared as the rule compares."""
    rule = SCHEMA.get(key)
    if not isinstance(rule, Choice):
        return False
    fold = str.lower if rule.ignore_case else str
    return fold(text) in [fold(c) for c in rule.choices]


def _kind(value):
    """The type family an override must keep: bool, int, float, str, list (tuples too), dict, or None (any)."""
    for kind in (bool, int, float, str, dict):
        if isinstance(value, kind):
            return kind
    return list if isinstance(value, (list, tuple)) else None


def _item_template(old):
    """The value whose type every item of a new list must keep: the old items' common type (ints and floats:
    float), or None (empty or mixed: items are not checked here; the schema checks the core keys)."""
    kinds = {_kind(v) for v in old}
    if kinds == {int, float}:
        return 0.0
    return old[0] if len(kinds) == 1 and None not in kinds else None


def _coerce(value, old, key, text, ruled=False):
    """``value`` (parsed from ``text``) in the type of ``old``, the value it replaces; ConfigError naming ``key``.
    ``ruled``: a schema rule checks ``key`` (an item of a listed key: ``SOLVER.STEP_EPOCHS[0]``), so an int
    default does not make a fraction an error; the rule decides (``SOLVER.STEP_EPOCHS [12.5]`` is a Float list)."""
    kind = _kind(old)
    ruled = ruled or key in SCHEMA

    def fail(what):
        raise ConfigError('config key %s: %r is %s (old value %r)' % (key, text, what, old))

    if kind is None or value is None:
        return value
    if kind is bool:
        return value if isinstance(value, bool) else fail('not a bool (use True or False)')
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail('not a number')
        if not math.isfinite(value):
            fail('not a finite number')
        if kind is float:
            return float(value)
        if isinstance(value, float) and not value.is_integer() and not ruled:
            fail('not an integer')     # (a core key's schema rule says so itself, with its range)
        return int(value) if isinstance(value, float) and value.is_integer() else value   # 1e5 -> 100000
    if kind is list:
        if not isinstance(value, (list, tuple)):
            fail('not a list literal (write e.g. [1, 2])')
        item = _item_template(old)
        return type(value)(_coerce(v, item, '%s[%d]' % (key, i), v, ruled) for i, v in enumerate(value))
    if not isinstance(value, kind):
        fail('not a %s' % kind.__name__)
    return value


def _parse_value(text, old, key='?'):
    """Turn a command-line string into the type of the value it replaces (:func:`_coerce`).

    ``None`` (any case) clears only a nullable key (:func:`_nullable`); ``true``/``false`` (any case) are the only
    bool values (the original-style ``TEST.FLIP false`` used to become the truthy string 'false'); a float key given
    ``1`` stays a float, an int key given ``2.5`` is an error, a list key needs a list literal whose items keep the
    old items' type, a string key takes the text as it is.
    """
    if not isinstance(text, str):
        return _coerce(text, old, key, text)
    low = text.strip().lower()
    if low == 'none' and _is_choice(key, text):
        return text        # the string 'none' is a value of its own (TEST.NMS, TEST.RESCORE: the default "off")
    if low == 'none':
        if not _nullable(key, old):
            rule = SCHEMA.get(key)
            raise ConfigError('config key %s: None is not allowed (%s)' % (
                key, rule.describe() if rule is not None else 'the key is not nullable; its value is %r' % (old,)))
        return None
    if isinstance(old, str):
        return text
    if low.lstrip('+-') in ('inf', 'infinity', 'nan'):
        raise ConfigError('config key %s: %r is not a finite number' % (key, text))
    if low in ('true', 'false'):
        return _coerce(low == 'true', old, key, text)
    if old is None and text[:1] not in '[(0123456789-.+{':
        return text        # a path or a name for a key whose default is None (MODEL.WEIGHT)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if old is None:
            return text
        raise ConfigError('config key %s: cannot parse %r as %s (old value %r)'
                          % (key, text, type(old).__name__, old)) from None
    if isinstance(value, float) and not math.isfinite(value):   # '1e999' parses as inf; 'inf' does not parse
        raise ConfigError('config key %s: %r is %r, not a finite number' % (key, text, value))
    return _coerce(value, old, key, text)


def _is_key(cfg, text):
    """Whether ``text`` is a dotted key of ``cfg`` ('SOLVER.BASE_LR')."""
    node = cfg
    for part in str(text).split('.'):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def merge_from_list(cfg, opts):
    """Apply ``KEY VALUE`` pairs, e.g. ``['SOLVER.BASE_LR', '1e-3', 'MODEL.STAGE_NUM', '2']``, then validate.

    Keys must exist already (a typo should fail, not create a key nobody reads). Values are parsed
    with ``ast.literal_eval`` and keep the type of the value they replace (see :func:`_parse_value`).
    The whole resulting config (overrides and the exp's own values) is then checked against the declarative
    schema of the core keys (:mod:`cvpack.config.schema`: types, ranges, finiteness), raising
    :class:`~cvpack.config.schema.ConfigError` that names the key and the value.
    """
    opts = list(opts or [])
    if len(opts) % 2:
        # the key without a value: the first whose "value" is itself a key of cfg, else the last item
        missing = next((k for k, v in zip(opts[0::2], opts[1::2]) if _is_key(cfg, v)), opts[-1])
        raise ConfigError('config key %s has no value (overrides come in KEY VALUE pairs, got an odd number: %s)'
                          % (missing, ' '.join(map(str, opts))))
    # the values refresh_dataset_keys compares with; a project's own DATASET block may have neither key
    dataset = cfg.get('DATASET', {})
    old_name, old_meta_file = dataset.get('NAME'), dataset.get('META_FILE', '')
    for key, text in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = key.split('.')
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise KeyError('unknown config key %r (no %r)' % (key, part))
            node = node[part]
        if parts[-1] not in node:
            raise KeyError('unknown config key %r' % key)
        node[parts[-1]] = _parse_value(text, node[parts[-1]], key)
    # a new DATASET.NAME / META_FILE brings its keypoint keys and file layout (cvpack/config/datasets.py)
    refresh_dataset_keys(cfg, old_name, old_meta_file, set(opts[0::2]))
    from ..data.combine_spec import combine_sources
    combine_sources(cfg)     # DATASET.COMBINE: each source's keys, weight and MAP, before any file is read
    return validate_config(cfg)


def to_plain(obj):
    """EasyDicts/tuples to plain dicts/lists, for JSON and ``torch.save(weights_only=True)``."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def dump_config(cfg, path):
    """Write the resolved config as JSON (``path`` is usually ``OUTPUT_DIR/config.json``)."""
    with atomic_output(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(to_plain(cfg), f, indent=2, sort_keys=True)


def link_log(cfg):
    """Create OUTPUT_DIR and link it as ``log`` inside the exp folder (the original ``-log``).

    Returns ``(link, lines)``: ``lines`` say what was done, one per action (created, already there, left)."""
    lines = []
    if osp.isdir(cfg.OUTPUT_DIR):
        lines.append('output folder %s exists' % cfg.OUTPUT_DIR)
    else:
        os.makedirs(cfg.OUTPUT_DIR)
        lines.append('created output folder %s' % cfg.OUTPUT_DIR)
    link = osp.join(cfg.EXP_DIR, 'log')
    if not osp.lexists(link):
        os.symlink(cfg.OUTPUT_DIR, link)
        lines.append('created link %s -> %s' % (link, cfg.OUTPUT_DIR))
    elif osp.realpath(link) != osp.realpath(cfg.OUTPUT_DIR):
        lines.append('note: %s already points to %s, left as it is' % (link, osp.realpath(link)))
    else:
        lines.append('link %s -> %s exists' % (link, cfg.OUTPUT_DIR))
    return link, lines


def _print(text):
    """Print to stdout; a reader that stops early (``python config.py | head``) ends the output quietly
    instead of with a BrokenPipeError traceback (the recipe of the Python docs, "Note on SIGPIPE")."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # the interpreter's final flush would raise again


def config_main(cfg, argv=None):
    """``python config.py [-log] [KEY VALUE ...]``: print the resolved config, and with ``-log`` create OUTPUT_DIR,
    link it as ``./log`` and print what was created.

    A bad override (unknown key, wrong type, a KEY without VALUE) or a bad DATASET.META_FILE is a usage error as in
    train.py: exit 2 with one line on stderr naming the key, no traceback."""
    parser = argparse.ArgumentParser(description='Show the resolved config of exp %s' % cfg.EXP_NAME)
    parser.add_argument('-log', '--linklog', action='store_true', help='create OUTPUT_DIR and link it as ./log')
    parser.add_argument('opts', nargs='*', metavar='KEY VALUE', help='overrides; -log may come anywhere')
    args = parse_overrides(parser, sys.argv[1:] if argv is None else argv)
    try:
        cfg = merge_from_list(copy.deepcopy(cfg), args.opts)
    except (ConfigError, KeyError) as e:
        usage_error(parser, e.args[0] if e.args else e)
    if args.linklog:
        try:
            lines = link_log(cfg)[1]
        except OSError as e:   # OUTPUT_DIR a file, below a file, or not writable: one line, as a bad override
            usage_error(parser, '-log: cannot create OUTPUT_DIR %s and its link %s: %s (%s)'
                        % (cfg.OUTPUT_DIR, osp.join(cfg.EXP_DIR, 'log'), e.strerror or e, e.filename))
        _print('\n'.join(lines))
    else:
        _print(json.dumps(to_plain(cfg), indent=2, sort_keys=True))
    return cfg
