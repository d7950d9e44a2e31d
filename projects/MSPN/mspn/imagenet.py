"""ImageNet initialisation of MSPN from torchvision ResNet-50 weights (docs/reference/rsn_mspn.md §1.8, §9.5).

The original loaded a renamed file by suffix matching, which crashed for 2+ stages (docs/reference/defects.md R#11) and,
per the maintainer, only reached the first stage's conv1. Here an explicit key map sends every torchvision key to the
stem (conv1/bn1 -> ``top.conv``) and to the encoder of **every** stage, as mmpose does:

    conv1.weight, bn1.*                 -> top.conv.conv.weight, top.conv.bn.*
    layerX.Y.convN.weight, layerX.Y.bnN.* -> stage{s}.downsample.layerX.Y.conv_bn_relu{N}.{conv,bn}.*
    layerX.Y.downsample.0 / .1          -> stage{s}.downsample.layerX.Y.downsample.{conv,bn}.*
    fc.*                                -> unused

Choices:
* torchvision convs have no bias; ours do. The biases of every loaded conv are set to 0, so a loaded unit computes
  exactly torchvision's conv + BN (also in eval mode with the ImageNet running statistics).
* The Megvii pipeline feeds BGR images normalised with BGR-ordered ImageNet statistics, while torchvision weights
  expect RGB. With ``bgr_input`` the stem's input channels are reversed, so the stem sees each colour with its
  trained filter.
* Stages > 0 start from layer1 on the 64-channel cross_conv output (not an image); their encoders still take the
  ImageNet weights, as mmpose's MSPN does.
"""
import re

import torch

from cvpack.modeling.pretrained import load_mapped

_BLOCK_KEY = re.compile(r'^(layer\d)\.(\d+)\.(conv|bn)(\d)\.(.+)$')
_DOWN_KEY = re.compile(r'^(layer\d)\.(\d+)\.downsample\.([01])\.(.+)$')


def resnet_key_map(stage_num):
    """Return ``key_map(torchvision_key) -> list of our keys (or None)`` for a ``stage_num``-stage MSPN."""

    def key_map(key):
        stem = re.match(r'^(conv|bn)1\.(.+)$', key)
        if stem:
            return ['top.conv.%s.%s' % (stem.group(1), stem.group(2))]
        m = _BLOCK_KEY.match(key)
        if m:
            layer, idx, kind, n, rest = m.groups()
            local = '%s.%s.conv_bn_relu%s.%s.%s' % (layer, idx, n, kind, rest)
        else:
            m = _DOWN_KEY.match(key)
            if not m:
                return None
            layer, idx, which, rest = m.groups()
            local = '%s.%s.downsample.%s.%s' % (layer, idx, 'conv' if which == '0' else 'bn', rest)
        return ['stage%d.downsample.%s' % (s, local) for s in range(stage_num)]
    return key_map


def load_imagenet_resnet(model, state, bgr_input=True):
    """Copy a torchvision ResNet-50 state dict into ``model`` (a bottleneck :class:`MultiStageNet`), every stage.

    Returns the :class:`cvpack.modeling.pretrained.LoadReport`: ``loaded`` lists the tensors copied from ``state``;
    the conv biases zeroed here are not in the file and are listed as ``initialised`` (not as missing).
    """
    state = dict(state)
    if bgr_input and 'conv1.weight' in state:
        state['conv1.weight'] = state['conv1.weight'].flip(1)   # RGB filters -> BGR input
    report = load_mapped(model, state, resnet_key_map(model.stage_num))
    params = dict(model.named_parameters())
    zeroed = [k[:-len('weight')] + 'bias' for k in report.loaded if k.endswith('conv.weight')]
    with torch.no_grad():
        for key in zeroed:
            params[key].zero_()
    report.initialised = sorted(zeroed)
    report.missing = [k for k in report.missing if k not in set(zeroed)]
    return report
