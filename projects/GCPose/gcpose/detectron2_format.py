"""Detectron2 Keypoint R-CNN checkpoints (model zoo ``.pkl``, GCPose authors' ``.pth``) -> our GCPose state dicts.

A project-side weight format for ``cvpack``'s converter (``cfg.MODEL.WEIGHT_FORMATS['detectron2']``, set in
:func:`projects.GCPose.gcpose.config.add_gcpose_config`): :func:`detect` recognises the object
``cvpack.safe_load.load_file`` returned, :func:`convert` maps it onto the exp's model.

Sources (key layout: ``tests/data/detectron2_keypoint_rcnn_manifest.json``, written by
``projects/GCPose/tools/make_detectron2_manifest.py`` from Detectron2's module definitions):

* the Detectron2 model zoo's ``keypoint_rcnn_R_{50,101}_FPN_3x`` ``model_final_*.pkl``: ``{'model': {name: numpy
  array}, '__author__': 'Detectron2 Model Zoo', ...}``;
* the GCPose authors' checkpoints (a Detectron2 v0.5 fork, ``{'model': {name: tensor}, 'optimizer', 'scheduler',
  'iteration'}``): the same names plus ``conv_channel`` and the ``MHSA_{1,5}`` GCM blocks of the keypoint head.

Every source key is mapped by an explicit full-name rule (no suffix matching), every shape is checked, and a
failure names every source key that could not be placed, every target key left unfilled and every shape mismatch.
Only ``num_batches_tracked`` counters (which Detectron2's FrozenBatchNorm2d does not keep) are created, as 0.

The weights need Detectron2's input convention and trunk (docs in projects/GCPose/README.md, "Pretrained
models"), returned as config overrides: MSRA ResNet (stride in the first 1x1 conv of a stage), FrozenBN,
BGR input, pixel mean (103.530, 116.280, 123.675) (or the checkpoint's own ``pixel_mean``), std (1, 1, 1).
"""
import copy
import re

import numpy as np
import torch

# Detectron2 defaults for its MSRA-initialised models (config/defaults.py: PIXEL_MEAN, PIXEL_STD, FORMAT 'BGR').
D2_PIXEL_MEAN = [103.530, 116.280, 123.675]
D2_PIXEL_STD = [1.0, 1.0, 1.0]
_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_WB = r'(weight|bias)'


def _rules():
    """(full-match regex on the Detectron2 name, function of its groups -> our name)."""
    body, kp = 'backbone.body.', 'roi_heads.keypoint_head.'
    return [
        (r'backbone\.bottom_up\.stem\.conv1\.weight', lambda: body + 'conv1.weight'),
        (r'backbone\.bottom_up\.stem\.conv1\.norm\.' + _BN, lambda f: body + 'bn1.' + f),
        (r'backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.weight',
         lambda s, b, j: '%slayer%d.%s.conv%s.weight' % (body, int(s) - 1, b, j)),
        (r'backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.norm\.' + _BN,
         lambda s, b, j, f: '%slayer%d.%s.bn%s.%s' % (body, int(s) - 1, b, j, f)),
        (r'backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.weight',
         lambda s, b: '%slayer%d.%s.downsample.0.weight' % (body, int(s) - 1, b)),
        (r'backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.norm\.' + _BN,
         lambda s, b, f: '%slayer%d.%s.downsample.1.%s' % (body, int(s) - 1, b, f)),
        (r'backbone\.fpn_(lateral|output)([2-5])\.' + _WB,
         lambda t, s, f: 'backbone.fpn.%s.%d.%s' % (t, int(s) - 2, f)),
        (r'proposal_generator\.rpn_head\.(conv|objectness_logits|anchor_deltas)\.' + _WB,
         lambda m, f: 'rpn.head.%s.%s' % (m, f)),
        (r'roi_heads\.box_head\.(fc[12])\.' + _WB, lambda m, f: 'roi_heads.box_head.%s.%s' % (m, f)),
        # FastRCNNOutputLayers: cls_score has num_classes + 1 outputs with background LAST, as our BoxHead
        (r'roi_heads\.box_predictor\.(cls_score|bbox_pred)\.' + _WB,
         lambda m, f: 'roi_heads.box_head.%s.%s' % (m, f)),
        (r'roi_heads\.keypoint_head\.conv_fcn(\d+)\.' + _WB, lambda i, f: '%sconvs.%d.%s' % (kp, int(i) - 1, f)),
        (r'roi_heads\.keypoint_head\.score_lowres\.' + _WB, lambda f: kp + 'score_lowres.' + f),
        # GCPose fork: 1x1 256 -> 512 projection and the SABlocks ``MHSA_i`` placed before ``conv_fcn{i}``
        (r'roi_heads\.keypoint_head\.conv_channel\.' + _WB, lambda f: kp + 'input_proj.' + f),
        (r'roi_heads\.keypoint_head\.MHSA_(\d+)\.(norm[12])\.' + _BN,
         lambda i, n, f: '%sgcms.%d.%s.%s' % (kp, int(i) - 1, n, f)),
        (r'roi_heads\.keypoint_head\.MHSA_(\d+)\.conv_fc\.' + _WB,
         lambda i, f: '%sgcms.%d.conv.%s' % (kp, int(i) - 1, f)),
        (r'roi_heads\.keypoint_head\.MHSA_(\d+)\.MHSA\.to_(qk|v)\.weight',
         lambda i, m: '%sgcms.%d.mhsa.%s.weight' % (kp, int(i) - 1, m)),
        # rel_height indexes vertical offsets y_j - y_i, rel_width horizontal ones; both tables are stored in
        # BoTNet's pad-and-reshape order (row k = offset k - (L - 1)), the order gcm.relative_logits reads
        (r'roi_heads\.keypoint_head\.MHSA_(\d+)\.MHSA\.pos_emb\.rel_(height|width)',
         lambda i, a: '%sgcms.%d.mhsa.rel_%s' % (kp, int(i) - 1, a[0])),
    ]


_COMPILED = [(re.compile(p), f) for p, f in _rules()]
# Entries of old checkpoints that are inputs to checks or to the config, not weights (Detectron2's
# DetectionCheckpointer._load_model tolerates them too).
_PIXEL_KEYS = ('pixel_mean', 'pixel_std')
_CELL_ANCHORS = re.compile(r'proposal_generator\.anchor_generator\.cell_anchors\.(\d+)')


class Detectron2FormatError(ValueError):
    """The checkpoint does not fit the exp's model or holds NaN/inf; ``unplaced``, ``unfilled``, ``mismatched`` (shape
    mismatches, then tensors holding NaN/inf) list the keys."""

    def __init__(self, message, unplaced=(), unfilled=(), mismatched=()):
        super().__init__(message)
        self.unplaced, self.unfilled, self.mismatched = list(unplaced), list(unfilled), list(mismatched)


def map_key(name):
    """Our state-dict key for a Detectron2 key, or None when no rule covers it."""
    for pattern, fn in _COMPILED:
        m = pattern.fullmatch(name)
        if m:
            return fn(*m.groups())
    return None


def _model_entries(obj):
    """The state dict inside ``obj``: its 'model' dict, or ``obj`` itself when it is a bare state dict (Detectron2's
    checkpointer wraps a file without 'model' the same way); None when neither has ``backbone.bottom_up.*`` keys."""
    if not isinstance(obj, dict):
        return None
    for cand in (obj.get('model'), obj):
        if isinstance(cand, dict) and any(isinstance(k, str) and k.startswith('backbone.bottom_up.') for k in cand):
            return cand
    return None


def detect(obj) -> bool:
    """True for a Detectron2 checkpoint: a dict whose 'model' dict (or itself) has ``backbone.bottom_up.*`` keys."""
    return _model_entries(obj) is not None


def _as_tensor(name, value):
    if torch.is_tensor(value):
        return value.detach()   # load_file maps to the CPU already; meta stand-ins stay shape-only
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in 'fiub':
        return torch.from_numpy(np.ascontiguousarray(value))
    raise Detectron2FormatError('model entry %r is a %s, not an array' % (name, type(value).__name__),
                                unplaced=[name])


def _vector(name, value):
    """pixel_mean / pixel_std: (3, 1, 1) or (3,) -> list of 3 floats."""
    v = _as_tensor(name, value).double().reshape(-1)
    if v.numel() != 3:
        raise Detectron2FormatError('%s has %d values, expected 3 (one per BGR channel)' % (name, v.numel()),
                                    mismatched=[name])
    return [float(x) for x in v]


def config_overrides(model_entries):
    """The settings Detectron2's weights were trained with, as ``{'DOTTED.KEY': value}`` for our config."""
    mean = _vector('pixel_mean', model_entries['pixel_mean']) if 'pixel_mean' in model_entries else D2_PIXEL_MEAN
    std = _vector('pixel_std', model_entries['pixel_std']) if 'pixel_std' in model_entries else D2_PIXEL_STD
    return {'MODEL.RESNET.STRIDE_IN_1X1': True,   # MSRA ResNet: the stride sits in each stage's first 1x1 conv
            'MODEL.RESNET.NORM': 'FrozenBN',      # eps 1e-5, as detectron2.layers.FrozenBatchNorm2d
            'DATASET.COLOR_RGB': False,           # Detectron2 INPUT.FORMAT 'BGR'
            'INPUT.PIXEL_MEAN': list(mean),
            'INPUT.PIXEL_STD': list(std)}


def apply_overrides(cfg, overrides):
    """A deep copy of ``cfg`` with ``{'A.B.C': value}`` set; every key must already exist (no silent typos)."""
    cfg = copy.deepcopy(cfg)
    for dotted, value in overrides.items():
        node, *path = [cfg] + dotted.split('.')
        *parents, leaf = path
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError('config has no key %s' % dotted)
        node[leaf] = value
    return cfg


def _target_shapes(cfg):
    """{our key: (shape, dtype)} of the exp's model, built on the meta device (no memory, no init cost)."""
    from .model import build_model
    with torch.device('meta'):
        model = build_model(cfg)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def _check_cell_anchors(name, value, cfg, mismatched):
    """Old checkpoints store the RPN's cell anchors: they must be ours, or the RPN deltas mean something else."""
    from cvpack.ops.anchors import cell_anchors
    level = int(_CELL_ANCHORS.fullmatch(name).group(1))
    sizes = list(cfg.MODEL.RPN.ANCHOR_SIZES)
    if level >= len(sizes):
        mismatched.append('%s: level %d, but MODEL.RPN.ANCHOR_SIZES has %d levels' % (name, level, len(sizes)))
        return
    ours = cell_anchors(sizes[level], tuple(cfg.MODEL.RPN.ASPECT_RATIOS))
    theirs = _as_tensor(name, value).float()
    if tuple(theirs.shape) != tuple(ours.shape) or not torch.allclose(theirs, ours, atol=1e-3):
        mismatched.append('%s: %s, ours (MODEL.RPN ANCHOR_SIZES / ASPECT_RATIOS) %s'
                          % (name, theirs.tolist(), [[round(v, 3) for v in r] for r in ours.tolist()]))


def _hints(source_keys, target):
    """One-line diagnoses of the common mistakes (wrong depth, GCPose weights on the baseline exp or vice versa)."""
    hints = []
    res4 = {k.split('.')[3] for k in source_keys if k.startswith('backbone.bottom_up.res4.')}
    ours = {k.split('.')[3] for k in target if k.startswith('backbone.body.layer3.')}
    if res4 and ours and len(res4) != len(ours):
        depth = {6: 'ResNet-50', 23: 'ResNet-101'}
        hints.append('the checkpoint is a %s (res4 has %d blocks) but the exp builds %d blocks in layer3: use the '
                     'matching R50/R101 exp' % (depth.get(len(res4), 'ResNet'), len(res4), len(ours)))
    src_gcm = any('.MHSA_' in k for k in source_keys)
    tgt_gcm = any('.gcms.' in k for k in target)
    if src_gcm != tgt_gcm:
        hints.append('the checkpoint %s GCMs (GCPose) but the exp %s: use a %s exp'
                     % ('has' if src_gcm else 'has no', 'has' if tgt_gcm else 'has none',
                        'gcpose.*' if src_gcm else 'keypoint_rcnn.*'))
    return hints


def convert_file(source, cfg):
    """Read ``source`` (path or URL) with ``cvpack.safe_load.load_file`` and :func:`convert` it.

    Nothing in the file runs: pickles holding anything but arrays, containers, strings and numbers are refused
    (``UnsafeFileError``). Errors are ``CheckpointError`` s naming the file.
    """
    from cvpack.safe_load import CheckpointError, load_file
    obj = load_file(source)
    if not detect(obj):
        raise CheckpointError(source, "not a Detectron2 checkpoint (no 'model' dict with backbone.bottom_up.* keys)")
    try:
        return convert(obj, cfg)
    except Detectron2FormatError as e:
        raise CheckpointError(source, str(e)) from e


def convert(obj, cfg):
    """Map a Detectron2 checkpoint onto the exp's model.

    Args:
        obj: what ``cvpack.safe_load.load_file`` returned for the file (dict with 'model': {Detectron2 name:
            numpy array or tensor}, plus metadata / training state).
        cfg: the exp config (not modified).
    Returns:
        dict(state_dict={our key: tensor} loading with strict=True into the model built from cfg with the
        overrides applied, cfg={'DOTTED.KEY': value} overrides (trunk, norm, channel order, mean/std),
        dropped=[str] entries deliberately not used).
    Raises:
        Detectron2FormatError naming every unplaced source key, unfilled target key, shape mismatch and tensor
        holding NaN/inf.
    """
    entries = _model_entries(obj)
    if entries is None:
        raise Detectron2FormatError("not a Detectron2 checkpoint (no 'model' dict with backbone.bottom_up.* keys)")
    overrides = config_overrides(entries)
    cfg = apply_overrides(cfg, overrides)
    target = _target_shapes(cfg)
    dropped = [] if entries is obj else ['%s (checkpoint metadata / training state)' % k for k in obj if k != 'model']
    state, unplaced, mismatched, non_finite, origin = {}, [], [], [], {}
    for name, value in entries.items():
        if name in _PIXEL_KEYS:
            dropped.append('%s (read into INPUT.%s)' % (name, name.upper()))
            continue
        if _CELL_ANCHORS.fullmatch(name):
            _check_cell_anchors(name, value, cfg, mismatched)
            dropped.append('%s (equal to our anchors, which are computed)' % name)
            continue
        ours = map_key(name) if isinstance(name, str) else None
        if ours is None or ours not in target:
            unplaced.append(str(name) if ours is None else '%s (-> %s, not in this model)' % (name, ours))
            continue
        if ours in origin:
            mismatched.append('%s and %s both map to %s' % (origin[ours], name, ours))
            continue
        try:
            tensor = _as_tensor(name, value)
        except Detectron2FormatError as e:     # collected with the rest, so one error names every bad key
            mismatched.append(str(e))
            continue
        shape, dtype = target[ours]
        if tuple(tensor.shape) != shape:
            mismatched.append('%s %s -> %s %s' % (name, tuple(tensor.shape), ours, shape))
            continue
        # a diverged run's weights: NaN boxes and scores are dropped at inference, so they gave AP 0, exit 0
        if tensor.is_floating_point() and not tensor.is_meta and not bool(torch.isfinite(tensor).all()):
            non_finite.append('%s holds NaN/inf (%d of %d values)'
                              % (name, int((~torch.isfinite(tensor)).sum()), tensor.numel()))
        state[ours], origin[ours] = tensor.to(dtype), name
    unfilled = []
    for key, (shape, dtype) in target.items():
        if key in state:
            continue
        # Detectron2's FrozenBatchNorm2d keeps no counter; ours is never read (BatchNorm reads it only when
        # momentum is None, which no module here uses)
        if key.endswith('.num_batches_tracked'):
            state[key] = torch.zeros(shape, dtype=dtype)
        else:
            unfilled.append(key)
    misfit = unplaced or unfilled or mismatched
    if misfit or non_finite:
        lines = ['Detectron2 checkpoint does not fit the exp model (%s, %s, %d keypoints):' % (
            cfg.MODEL.BACKBONE, 'GCPose head' if cfg.MODEL.ROI_KEYPOINT_HEAD.GCM_POSITIONS else 'stock head',
            cfg.DATASET.KEYPOINT.NUM) if misfit else 'Detectron2 checkpoint holds NaN/inf (a diverged run?):']
        for title, keys in (('source keys that could not be placed', unplaced),
                            ('model keys left unfilled', unfilled), ('shape mismatches', mismatched),
                            ('tensors holding NaN/inf', non_finite)):
            if keys:
                lines.append('%d %s: %s' % (len(keys), title, ', '.join(keys)))
        if misfit:   # the hints are about architecture settings, which NaN values are not
            lines += ['hint: ' + h for h in _hints(list(entries), target)]
        raise Detectron2FormatError('\n'.join(lines), unplaced, unfilled, mismatched + non_finite)
    return {'state_dict': state, 'cfg': overrides, 'dropped': dropped}
