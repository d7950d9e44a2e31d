"""Write the key/shape manifest of Detectron2's Keypoint R-CNN checkpoints (model zoo and the GCPose fork).

The layout is transcribed from Detectron2's module definitions (v0.5/v0.6, facebookresearch/detectron2):

* ``modeling/backbone/resnet.py``: ``BasicStem`` = ``stem.conv1`` (7x7, no bias) with its norm as the conv's
  ``.norm`` child; stages ``res2..res5`` of ``BottleneckBlock`` s (``conv1`` 1x1, ``conv2`` 3x3, ``conv3`` 1x1, each
  with ``.norm``; the first block of each stage has a 1x1 ``shortcut`` with ``.norm``); depth 50 = [3, 4, 6, 3],
  101 = [3, 4, 23, 3] blocks, bottleneck widths 64..512, outputs 256..2048. Norm ``FrozenBN``:
  ``FrozenBatchNorm2d`` holds weight, bias, running_mean, running_var (no ``num_batches_tracked``).
* ``modeling/backbone/fpn.py``: ``fpn_lateral{2..5}`` (1x1) and ``fpn_output{2..5}`` (3x3), both with bias, under
  ``backbone.``; the ResNet is ``backbone.bottom_up``; ``LastLevelMaxPool`` has no parameters.
* ``modeling/proposal_generator/rpn.py``: ``StandardRPNHead``: ``conv`` (3x3), ``objectness_logits`` (1x1, A),
  ``anchor_deltas`` (1x1, 4A) under ``proposal_generator.rpn_head.``, A = 3 aspect ratios.
* ``modeling/roi_heads/box_head.py`` / ``fast_rcnn.py``: ``FastRCNNConvFCHead`` ``fc1`` (256*7*7 -> 1024),
  ``fc2``; ``FastRCNNOutputLayers`` ``cls_score`` (num_classes + 1, background last) and ``bbox_pred``
  (4 * num_classes), under ``roi_heads.box_head.`` / ``roi_heads.box_predictor.``.
* ``modeling/roi_heads/keypoint_head.py``: ``KRCNNConvDeconvUpsampleHead``: ``conv_fcn1..8`` (3x3, 512) and the
  ``score_lowres`` ConvTranspose2d (weight (512, K, 4, 4)) under ``roi_heads.keypoint_head.``.
* GCPose fork (lingl-space/maskrcnn_keypoint_refined, same file): ``conv_channel`` (1x1 256 -> 512, bias) before
  the convs, and an ``SABlock`` ``MHSA_{i}`` before ``conv_fcn{i}`` for i = 1, 5: ``norm1``, ``norm2``
  (``nn.BatchNorm2d``: + ``num_batches_tracked``), ``conv_fc`` (3x3, bias), ``MHSA.to_qk`` (1x1, no bias, 2 * 4 * 128),
  ``MHSA.to_v`` (4 * 128), ``MHSA.pos_emb.rel_height`` / ``rel_width`` (2 * 14 - 1, 128). Its ``conv_fcn1`` is
  512 -> 512.

Old checkpoints (the zoo's were trained in 2019) may also hold ``pixel_mean`` / ``pixel_std`` (3, 1, 1) and the
anchor generator's ``proposal_generator.anchor_generator.cell_anchors.{0..4}`` (3, 4): Detectron2's
``DetectionCheckpointer._load_model`` tolerates both; the manifest lists them as optional.

Usage: ``python projects/GCPose/tools/make_detectron2_manifest.py [OUT.json]``
(default ``tests/data/detectron2_keypoint_rcnn_manifest.json``).
"""
import json
import os.path as osp
import sys
from collections import OrderedDict

DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
FROZEN_BN = ('weight', 'bias', 'running_mean', 'running_var')
NUM_KEYPOINTS, NUM_ANCHORS, NUM_CLASSES = 17, 3, 1


def _conv(out, prefix, shape, bias=False, norm=None):
    out[prefix + '.weight'] = list(shape)
    if bias:
        out[prefix + '.bias'] = [shape[0]]
    for n in norm or ():
        out['%s.norm.%s' % (prefix, n)] = [shape[0]]


def resnet_keys(out, depth):
    p = 'backbone.bottom_up.'
    _conv(out, p + 'stem.conv1', (64, 3, 7, 7), norm=FROZEN_BN)
    cin = 64
    for s, blocks in enumerate(DEPTHS[depth]):
        mid, cout = 64 * 2 ** s, 256 * 2 ** s
        for b in range(blocks):
            q = '%sres%d.%d.' % (p, s + 2, b)
            if b == 0:
                _conv(out, q + 'shortcut', (cout, cin, 1, 1), norm=FROZEN_BN)
            _conv(out, q + 'conv1', (mid, cin if b == 0 else cout, 1, 1), norm=FROZEN_BN)
            _conv(out, q + 'conv2', (mid, mid, 3, 3), norm=FROZEN_BN)
            _conv(out, q + 'conv3', (cout, mid, 1, 1), norm=FROZEN_BN)
        cin = cout


def fpn_rpn_box_keys(out):
    for s, c in zip(range(2, 6), (256, 512, 1024, 2048)):
        _conv(out, 'backbone.fpn_lateral%d' % s, (256, c, 1, 1), bias=True)
        _conv(out, 'backbone.fpn_output%d' % s, (256, 256, 3, 3), bias=True)
    r = 'proposal_generator.rpn_head.'
    _conv(out, r + 'conv', (256, 256, 3, 3), bias=True)
    _conv(out, r + 'objectness_logits', (NUM_ANCHORS, 256, 1, 1), bias=True)
    _conv(out, r + 'anchor_deltas', (4 * NUM_ANCHORS, 256, 1, 1), bias=True)
    _conv(out, 'roi_heads.box_head.fc1', (1024, 256 * 7 * 7), bias=True)
    _conv(out, 'roi_heads.box_head.fc2', (1024, 1024), bias=True)
    _conv(out, 'roi_heads.box_predictor.cls_score', (NUM_CLASSES + 1, 1024), bias=True)
    _conv(out, 'roi_heads.box_predictor.bbox_pred', (4 * NUM_CLASSES, 1024), bias=True)


def keypoint_head_keys(out, gcm):
    k = 'roi_heads.keypoint_head.'
    if gcm:
        _conv(out, k + 'conv_channel', (512, 256, 1, 1), bias=True)
    cin = 512 if gcm else 256
    for i in range(1, 9):
        if gcm and i % 4 == 1:
            m = '%sMHSA_%d.' % (k, i)
            for n in ('norm1', 'norm2'):
                for f in FROZEN_BN:
                    out[m + n + '.' + f] = [512]
                out[m + n + '.num_batches_tracked'] = []
            _conv(out, m + 'conv_fc', (512, 512, 3, 3), bias=True)
            _conv(out, m + 'MHSA.to_qk', (2 * 4 * 128, 512, 1, 1))
            _conv(out, m + 'MHSA.to_v', (4 * 128, 512, 1, 1))
            out[m + 'MHSA.pos_emb.rel_height'] = [27, 128]
            out[m + 'MHSA.pos_emb.rel_width'] = [27, 128]
        _conv(out, '%sconv_fcn%d' % (k, i), (512, cin, 3, 3), bias=True)
        cin = 512
    out[k + 'score_lowres.weight'] = [512, NUM_KEYPOINTS, 4, 4]
    out[k + 'score_lowres.bias'] = [NUM_KEYPOINTS]


def manifest():
    variants = OrderedDict()
    for name, depth, gcm in (('zoo_R50', 50, False), ('zoo_R101', 101, False),
                             ('gcpose_R50', 50, True), ('gcpose_R101', 101, True)):
        keys = OrderedDict()
        resnet_keys(keys, depth)
        fpn_rpn_box_keys(keys)
        keypoint_head_keys(keys, gcm)
        variants[name] = keys
    optional = OrderedDict([('pixel_mean', [3, 1, 1]), ('pixel_std', [3, 1, 1])])
    for i in range(5):
        optional['proposal_generator.anchor_generator.cell_anchors.%d' % i] = [NUM_ANCHORS, 4]
    return OrderedDict([
        ('about', 'Detectron2 Keypoint R-CNN state-dict keys and shapes (written by '
                  'projects/GCPose/tools/make_detectron2_manifest.py from Detectron2\'s module definitions)'),
        ('exps', {'zoo_R50': 'keypoint_rcnn.R50.coco', 'zoo_R101': 'keypoint_rcnn.R101.coco',
                  'gcpose_R50': 'gcpose.R50.coco', 'gcpose_R101': 'gcpose.R101.coco'}),
        ('optional', optional),
        ('variants', variants)])


def main(argv):
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    out = argv[0] if argv else osp.join(root, 'tests', 'data', 'detectron2_keypoint_rcnn_manifest.json')
    m = manifest()
    with open(out, 'w') as f:
        # one key per line keeps the file diff-able
        f.write('{\n')
        f.write('"about": %s,\n"exps": %s,\n"optional": %s,\n"variants": {\n'
                % (json.dumps(m['about']), json.dumps(m['exps']), json.dumps(m['optional'])))
        for vi, (name, keys) in enumerate(m['variants'].items()):
            f.write('%s: {\n' % json.dumps(name))
            items = list(keys.items())
            f.write(',\n'.join('  %s: %s' % (json.dumps(k), json.dumps(v)) for k, v in items))
            f.write('\n}%s\n' % (',' if vi < len(m['variants']) - 1 else ''))
        f.write('}\n}\n')
    print('%s: %s' % (out, ', '.join('%s %d keys' % (n, len(k)) for n, k in m['variants'].items())))


if __name__ == '__main__':
    main(sys.argv[1:])
