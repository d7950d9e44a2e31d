"""Format 'mmpose': mmpose RSN / MSPN checkpoints (``{'state_dict': {'backbone.…', 'head.…'}, 'meta': …}``; the
mmpose 0.x files of its MSPN zoo name the head ``keypoint_head.…``, which mmpose 1.x renames on load, and so do we).

mmpose's ``RSN`` / ``MSPN`` backbone + ``MSPNHead`` compute the same network as our
:class:`cvpack.modeling.multistage.MultiStageNet` with three differences, all carried as config overrides:

* no conv biases (mmpose's ``ConvModule`` drops the bias when a norm layer follows): ``MODEL.CONV_BIAS False``.
  This is the whole parameter difference (RSN-18: 9,144,936 vs our 9,159,072, the 14,136 conv output channels);
* preprocessing: RGB input normalised with ImageNet mean/std (``PoseDataPreprocessor`` with ``bgr_to_rgb=True``),
  where the Megvii originals feed BGR: ``DATASET.COLOR_RGB True`` + ``INPUT.MEANS/STDS`` in RGB order; the box
  padding is mmpose's 1.25 (``GetBBoxCenterScale``): ``TEST.X_EXTENTION/Y_EXTENTION 0.25``;
* decoding and scoring: mmpose's ``MegviiHeatmap`` decoder (kernel 5), not the Megvii original's
  (``TEST.DECODER 'mmpose_megvii'``), and ``CocoMetric``'s ``bbox_keypoint`` instance score
  (``TEST.RESCORE 'simple_baselines'``, threshold 0.2); flip test on, unshifted (``shift_heatmap=False``).

Every key is mapped by an anchored rule on the *whole* key (below); a key no rule places is an error naming it.
The exp must have the architecture of the file (block type, blocks per layer, stages): a mismatch is an error
that says what the file holds. mmpose's PRM (``use_prm=True``, no released COCO model) differs from the Megvii PRM
we implement and is refused.
"""
import re

ARCH = {'rsn': 'rsb', 'mspn': 'bottleneck'}     # mmpose backbone -> our block type
_BN = r'(conv|bn)\.(weight|bias|running_mean|running_var|num_batches_tracked)'
_PARAM = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_ENC = r'backbone\.multi_stage_(?:rsn|mspn)\.(\d+)\.downsample\.layer([1-4])\.(\d+)\.'
_DEC = r'backbone\.multi_stage_(?:rsn|mspn)\.(\d+)\.upsample\.up([1-4])\.'
_UNIT = {'in_skip': 'u_skip', 'up_conv': 'up_conv', 'out_skip1': 'skip1', 'out_skip2': 'skip2',
         'cross_conv': 'cross_conv'}


def _rules():
    """(anchored regex, function(match) -> our key) for every mmpose RSN/MSPN key."""
    return [
        (r'backbone\.top\.top\.0\.' + _BN, lambda m: 'top.conv.%s.%s' % m.groups()),
        # RSB units keep their names except the fusing 1x1 (conv_bn3 -> conv_bn_relu3, still without ReLU)
        (_ENC + r'(conv_bn_relu1|conv_bn_relu2_[1-4]_[1-4]|conv_bn3|downsample)\.' + _BN,
         lambda m: 'stage%s.downsample.layer%s.%s.%s.%s.%s' % (
             m.group(1), m.group(2), m.group(3), 'conv_bn_relu3' if m.group(4) == 'conv_bn3' else m.group(4),
             m.group(5), m.group(6))),
        # MSPN bottleneck (mmpose's ResNet Bottleneck): convN / bnN -> conv_bn_reluN.conv / .bn
        (_ENC + r'conv([1-3])\.weight',
         lambda m: 'stage%s.downsample.layer%s.%s.conv_bn_relu%s.conv.weight' % m.groups()),
        (_ENC + r'bn([1-3])\.' + _PARAM,
         lambda m: 'stage%s.downsample.layer%s.%s.conv_bn_relu%s.bn.%s' % m.groups()),
        (_DEC + r'(in_skip|up_conv|out_skip1|out_skip2|cross_conv)\.' + _BN,
         lambda m: 'stage%s.upsample.up%s.%s.%s.%s' % (m.group(1), m.group(2), _UNIT[m.group(3)], m.group(4),
                                                      m.group(5))),
        # MSPNHead.predict_layers[stage * 4 + unit]: conv_layers 0 (1x1 + ReLU) / 1 (3x3 to K maps); mmpose 0.x
        # files (the MSPN zoo's 2020 checkpoints) name the head ``keypoint_head`` (TopdownMSMUHead, same layers)
        (r'(?:keypoint_)?head\.predict_layers\.(\d+)\.conv_layers\.([01])\.' + _BN,
         lambda m: 'stage%d.upsample.up%d.res_conv%d.%s.%s' % (
             int(m.group(1)) // 4, int(m.group(1)) % 4 + 1, int(m.group(2)) + 1, m.group(3), m.group(4))),
    ]


def weights_of(obj):
    """The state dict inside a loaded mmpose file (``state_dict``) or a bare one; None if not mmpose-shaped."""
    if not isinstance(obj, dict):
        return None
    state = obj.get('state_dict', obj)
    if not isinstance(state, dict):
        return None
    if any(isinstance(k, str) and k.startswith(('backbone.multi_stage_rsn.', 'backbone.multi_stage_mspn.'))
           for k in state):
        return state
    return None


def detect(obj):
    """mmpose RSN / MSPN weights: keys under ``backbone.multi_stage_rsn.`` or ``backbone.multi_stage_mspn.``."""
    return weights_of(obj) is not None


def architecture(state):
    """(backbone 'rsn' | 'mspn', stage count, blocks per layer) read from the keys."""
    kinds = {m.group(1) for m in (re.match(r'backbone\.multi_stage_(rsn|mspn)\.', k) for k in state) if m}
    if len(kinds) != 1:
        raise ValueError('mmpose weights mix backbones %s' % sorted(kinds))
    kind = kinds.pop()
    stages, blocks = set(), {}
    for key in state:
        m = re.match(_ENC, key)
        if m:
            stages.add(int(m.group(1)))
            layer = int(m.group(2))
            blocks[layer] = max(blocks.get(layer, 0), int(m.group(3)) + 1)
    return kind, len(stages), [blocks.get(i, 0) for i in (1, 2, 3, 4)]


def _check_exp(kind, stages, blocks, cfg):
    """The exp must build the network the file holds (no silent partial load). Without a config (a bare
    ``load_model_weights`` call) the strict key check that follows conversion does this job."""
    if not cfg:
        return
    from ..modeling.multistage import BACKBONES
    m = cfg.MODEL
    if m.BACKBONE not in BACKBONES:
        raise ValueError('mmpose %s weights need an RSN/MSPN exp (MODEL.BACKBONE one of %s), this exp has %r'
                         % (kind.upper(), sorted(BACKBONES), m.BACKBONE))
    block, default_blocks = BACKBONES[m.BACKBONE]
    exp_blocks = list(m.BLOCKS or default_blocks)   # None = the backbone's own
    if (ARCH[kind], blocks, stages) != (block, exp_blocks, int(m.STAGE_NUM)):
        raise ValueError('the file holds a %d-stage mmpose %s with blocks %s (our block %r); the exp %s builds '
                         'MODEL.BACKBONE %r = block %r, blocks %s, MODEL.STAGE_NUM %s: use the matching exp '
                         '(README, "Pretrained models")' % (stages, kind.upper(), blocks, ARCH[kind],
                                                            cfg.EXP_NAME, m.BACKBONE, block,
                                                            exp_blocks, m.STAGE_NUM))


def overrides(state):
    """Config overrides of mmpose's RSN/MSPN COCO configs (module docstring). A checkpoint that stores the data
    preprocessor's mean/std (``data_preprocessor.mean``/``std``, (3, 1, 1), RGB 0-255) gives them instead."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]    # mmpose's 123.675 ... / 255, RGB order
    if 'data_preprocessor.mean' in state and 'data_preprocessor.std' in state:
        mean = [float(v) / 255.0 for v in state['data_preprocessor.mean'].reshape(-1)]
        std = [float(v) / 255.0 for v in state['data_preprocessor.std'].reshape(-1)]
    return {
        'MODEL.CONV_BIAS': False,
        'DATASET.COLOR_RGB': True, 'INPUT.MEANS': mean, 'INPUT.STDS': std,
        'TEST.X_EXTENTION': 0.25, 'TEST.Y_EXTENTION': 0.25,
        'TEST.FLIP': True, 'TEST.FLIP_SHIFT': False,
        'TEST.DECODER': 'mmpose_megvii', 'TEST.GAUSSIAN_KERNEL': 5,
        'TEST.RESCORE': 'simple_baselines', 'TEST.KEYPOINT_THRESH': 0.2,
    }


def convert(obj, cfg):
    """mmpose keys -> ours by :func:`_rules`; errors name every key that no rule places."""
    state = weights_of(obj)
    kind, stages, blocks = architecture(state)
    _check_exp(kind, stages, blocks, cfg)
    dropped = [k for k in obj if k != 'state_dict'] if state is not obj else []
    rules = [(re.compile(pattern + r'\Z'), fn) for pattern, fn in _rules()]
    out, unplaced, prm = {}, [], []
    for key, value in state.items():
        if key.endswith('num_batches_tracked') or key.startswith('data_preprocessor.'):
            dropped.append(key)
            continue
        if re.match(r'(?:keypoint_)?head\.predict_layers\.\d+\.prm\.', key):
            prm.append(key)
            continue
        for rx, fn in rules:
            m = rx.match(key)
            if m:
                ours = fn(m)
                if ours in out:
                    raise ValueError('two mmpose keys map to %r (second: %r)' % (ours, key))
                out[ours] = value
                break
        else:
            unplaced.append(key)
    if prm:
        raise ValueError("mmpose's PRM (MSPNHead use_prm=True) is not our Megvii PRM and cannot be imported: %s"
                         % ', '.join(prm[:5]) + (' ...' if len(prm) > 5 else ''))
    if unplaced:
        raise ValueError('%d mmpose key(s) could not be placed: %s' % (len(unplaced), ', '.join(unplaced)))
    return {'state_dict': out, 'cfg': overrides(state), 'dropped': dropped}
