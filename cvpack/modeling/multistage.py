"""The Megvii multi-stage pose network (MSPN, Li et al. 2019; RSN, Cai et al. 2020) with a pluggable encoder block.

Module tree and names follow the originals exactly (docs/reference/rsn_mspn.md §1.1, §1.7), so their checkpoints
load strictly: ``top`` (stem), ``stage{s}.downsample.layer{1-4}.{b}`` (encoder), ``stage{s}.upsample.up{1-4}``
(decoder: ``u_skip``, ``up_conv``, ``skip1``, ``skip2``, ``cross_conv``, ``res_conv1``, ``res_conv2``).
Differences from the original, all behaviour-preserving at the original's shapes:

* block type, block counts and stage count come from the config (docs/reference/defects.md R#20: they were hard-coded);
* decoder level sizes are taken from the encoder feature maps instead of ``OUTPUT_SHAPE // 8 ...``, and the
  input/output ratio is validated with a clear error (docs/reference/defects.md R#19);
* ``zero_init_residual`` works (docs/reference/defects.md R#10: it referenced a missing ``bn3``);
* activation checkpointing does not update BN statistics twice (docs/reference/defects.md R#5, see :class:`ConvBnRelu`);
* the loss is computed batched (:mod:`cvpack.modeling.losses.megvii`), same value as the per-sample original.
* the eval forward runs only the head of the heatmap it returns and each decoder unit's up_conv before its resize:
  the same heatmap with fewer MACs (:meth:`MultiStageNet.forward`; ``original_eval`` restores the original's).

Blocks live in :mod:`cvpack.modeling.megvii_blocks`.
"""
from typing import List, Optional, Sequence

import torch.nn.functional as F
from torch import nn

from ..utils import import_target
from .layers import ConvBnRelu
from .losses.megvii import megvii_loss
from .megvii_blocks import BLOCKS, PRM

# MODEL.BACKBONE -> (block type, blocks per layer). 'Res-50' is the original config value (MSPN's encoder).
# A project's own block is named instead by MODEL.BACKBONE 'module:Class' with MODEL.BLOCKS (build_multistage).
BACKBONES = {
    'Res-18': ('res18', (2, 2, 2, 2)),      # RSN repo's Res18 baseline: 3-conv blocks, expansion 1
                                            # (docs/reference/rsn_mspn.md §1.2)
    'RSN-18': ('rsb', (2, 2, 2, 2)),        # docs/reference/rsn_mspn.md §1.3
    'RSN-50': ('rsb', (3, 4, 6, 3)),        # the author's recipe, issue #21 (docs/reference/rsn_mspn.md §1.6)
    'RSN-101': ('rsb', (3, 4, 23, 3)),
    'Res-50': ('bottleneck', (3, 4, 6, 3)),  # MSPN (docs/reference/rsn_mspn.md §1.5)
    'Res-101': ('bottleneck', (3, 4, 23, 3)),
}


class Stem(nn.Module):
    """``top``: 7x7/2 conv unit + 3x3/2 max-pool. (N, 3, H, W) -> (N, 64, H/4, W/4)."""

    def __init__(self, efficient=False, bias=True):
        super().__init__()
        self.conv = ConvBnRelu(3, 64, 7, 2, 3, efficient=efficient, bias=bias)

    def forward(self, x):
        """x: (N, 3, H, W) normalised image -> (N, 64, H/4, W/4)."""
        return F.max_pool2d(self.conv(x), 3, 2, 1)


class Encoder(nn.Module):
    """``stage{s}.downsample``: four residual layers at strides 1, 2, 2, 2 (1/4 ... 1/32 of the input)."""

    def __init__(self, block, blocks, has_skip=False, efficient=False, zero_init_residual=False, bias=True):
        super().__init__()
        self.has_skip = has_skip
        self.in_planes = 64
        self.bias = bias
        for k, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            setattr(self, 'layer%d' % (k + 1), self._make_layer(block, planes, count, 1 if k == 0 else 2, efficient))
        # Original init (docs/reference/rsn_mspn.md §1.1): Kaiming fan_out for the encoder convs, BN 1/0; conv biases
        # keep torch's default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:  # docs/reference/defects.md R#10 fixed: zero the last BN of each residual branch
            for m in self.modules():
                if isinstance(m, block):
                    nn.init.constant_(m.conv_bn_relu3.bn.weight, 0)

    @property
    def out_channels(self) -> List[int]:
        return [getattr(self, 'layer%d' % k)[-1].out_planes for k in (1, 2, 3, 4)]

    def _make_layer(self, block, planes, count, stride, efficient):
        downsample = None
        if stride != 1 or self.in_planes != planes * block.expansion:
            downsample = ConvBnRelu(self.in_planes, planes * block.expansion, 1, stride, 0, has_relu=False,
                                    efficient=efficient, bias=self.bias)
        layers = [block(self.in_planes, planes, stride, downsample, efficient=efficient, bias=self.bias)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes, efficient=efficient, bias=self.bias) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x, skip1=None, skip2=None):
        """x: (N, C, H/4, W/4); skip1/skip2: previous stage's lists (1/4 first) or None.

        Returns the four layer outputs deepest first (1/32, 1/16, 1/8, 1/4). With ``has_skip`` each layer's
        output gets the same-resolution skip1 + skip2 added before it feeds the next layer (MSPN aggregation).
        """
        feats = []
        for k in range(4):
            x = getattr(self, 'layer%d' % (k + 1))(x)
            if self.has_skip:
                x = x + skip1[k] + skip2[k]
            feats.append(x)
        return feats[::-1]


class UpsampleUnit(nn.Module):
    """``up{ind+1}``: fuse one encoder level with the coarser decoder feature, predict K heatmaps."""

    def __init__(self, ind, in_planes, num_keypoints, chl_num=256, gen_skip=False, gen_cross_conv=False,
                 efficient=False, prm=False, bias=True):
        super().__init__()
        self.ind = ind
        kw = dict(efficient=efficient, bias=bias)
        self.u_skip = ConvBnRelu(in_planes, chl_num, 1, 1, 0, has_relu=False, **kw)
        if ind > 0:
            self.up_conv = ConvBnRelu(chl_num, chl_num, 1, 1, 0, has_relu=False, **kw)
        self.gen_skip = gen_skip
        if gen_skip:
            self.skip1 = ConvBnRelu(in_planes, in_planes, 1, 1, 0, **kw)
            self.skip2 = ConvBnRelu(chl_num, in_planes, 1, 1, 0, **kw)
        self.gen_cross_conv = gen_cross_conv and ind == 3
        if self.gen_cross_conv:
            self.cross_conv = ConvBnRelu(chl_num, 64, 1, 1, 0, **kw)
        self.res_conv1 = ConvBnRelu(chl_num, chl_num, 1, 1, 0, **kw)
        self.res_conv2 = ConvBnRelu(chl_num, num_keypoints, 3, 1, 1, has_relu=False, **kw)
        if prm:
            self.prm = PRM(num_keypoints, efficient=efficient)

    def _up_conv_is_affine(self):
        """up_conv computes W x + b per pixel: no ReLU, and its BN (if any) normalises with running statistics
        (eval mode and tracked; a BN in training mode or without running statistics uses the batch's)."""
        unit = self.up_conv
        if unit.training or getattr(unit, 'has_relu', True):
            return False
        bn = getattr(unit, 'bn', None) if getattr(unit, 'has_bn', True) else None
        return bn is None or (not bn.training and bn.running_mean is not None)

    def forward(self, x, up_x, output_size, heatmap=True, conv_first=False):
        """x: encoder feature (N, C, h_l, w_l); up_x: previous unit's fused feature (N, 256, h', w') or None.

        Returns (out (N, 256, h_l, w_l), heatmap (N, K, *output_size), skip1, skip2, cross_conv); skips and
        cross_conv are None when not generated, the heatmap is None when ``heatmap`` is False (its head is not
        run). Resizes are bilinear with align_corners=True (original).

        ``conv_first``: apply ``up_conv`` to up_x before resizing it, not after (4x fewer MACs for it). The same
        function when up_conv is affine, i.e. its BN uses running statistics (eval mode) or is folded and it has
        no ReLU: the bilinear weights of every output pixel sum to 1, so resize(W x + b) = W resize(x) + b. Taken
        only then (:meth:`_up_conv_is_affine`).
        """
        out = self.u_skip(x)
        if self.ind > 0:
            if conv_first and self._up_conv_is_affine():
                out = out + F.interpolate(self.up_conv(up_x), size=out.shape[-2:], mode='bilinear',
                                          align_corners=True)
            else:
                up_x = F.interpolate(up_x, size=out.shape[-2:], mode='bilinear', align_corners=True)
                out = out + self.up_conv(up_x)
        out = F.relu(out)
        res = None
        if heatmap:
            res = self.res_conv2(self.res_conv1(out))
            if hasattr(self, 'prm'):
                res = self.prm(res)
            res = F.interpolate(res, size=output_size, mode='bilinear', align_corners=True)
        skip1 = self.skip1(x) if self.gen_skip else None
        skip2 = self.skip2(out) if self.gen_skip else None
        cross = self.cross_conv(out) if self.gen_cross_conv else None
        return out, res, skip1, skip2, cross


class Decoder(nn.Module):
    """``stage{s}.upsample``: units up1 (1/32) ... up4 (1/4)."""

    def __init__(self, in_planes: Sequence[int], num_keypoints, chl_num=256, gen_skip=False, gen_cross_conv=False,
                 efficient=False, prm=False, bias=True):
        super().__init__()
        for i, planes in enumerate(in_planes):
            setattr(self, 'up%d' % (i + 1), UpsampleUnit(i, planes, num_keypoints, chl_num, gen_skip, gen_cross_conv,
                                                         efficient, prm=prm and i == 3, bias=bias))

    def forward(self, feats, output_size, heatmaps=(True, True, True, True), conv_first=False):
        """feats: encoder outputs deepest first; heatmaps: which units (coarse->fine) run their heatmap head;
        conv_first: see :meth:`UpsampleUnit.forward`.

        Returns (heatmaps coarse->fine, None where not run; skip1 1/4-first; skip2; cross)."""
        out, res, skip1, skip2 = None, [], [], []
        for i, x in enumerate(feats):
            out, r, s1, s2, cross = getattr(self, 'up%d' % (i + 1))(x, out, output_size, heatmaps[i], conv_first)
            res.append(r)
            skip1.append(s1)
            skip2.append(s2)
        return res, skip1[::-1], skip2[::-1], cross


class SingleStage(nn.Module):
    """``stage{s}``: an :class:`Encoder` (``downsample``) and a :class:`Decoder` (``upsample``)."""

    def __init__(self, block, blocks, num_keypoints, chl_num=256, has_skip=False, gen_skip=False,
                 gen_cross_conv=False, efficient=False, zero_init_residual=False, prm=False, bias=True):
        super().__init__()
        self.downsample = Encoder(block, blocks, has_skip, efficient, zero_init_residual, bias)
        self.upsample = Decoder(self.downsample.out_channels[::-1], num_keypoints, chl_num, gen_skip,
                                gen_cross_conv, efficient, prm, bias)

    def forward(self, x, skip1, skip2, output_size, heatmaps=(True, True, True, True), conv_first=False):
        """One encoder-decoder stage.

        Args:
            x: (N, 64, H/4, W/4): the stem output (stage 0) or the previous stage's cross_conv.
            skip1, skip2: the previous stage's skip features, high to low resolution (None for stage 0).
            output_size: (h, w) of the heatmaps.
            heatmaps: 4 booleans, coarsest first: which levels run their heatmap head (the others give None).
            conv_first: the decoder units' up_conv before the resize (:meth:`UpsampleUnit.forward`).
        Returns:
            (heatmaps, skip1, skip2, cross): the 4 levels' heatmaps (N, K, h, w) coarsest first; the skip features
            for the next stage, 1/4 resolution first (empty in the last stage); cross_conv's (N, 64, H/4, W/4)
            input of the next stage (None in the last stage).
        """
        return self.upsample(self.downsample(x, skip1, skip2), output_size, heatmaps, conv_first)


class MultiStageNet(nn.Module):
    """MSPN / RSN: ``top`` + ``stage_num`` encoder-decoder stages with cross-stage aggregation.

    Args:
        num_keypoints: K.
        output_shape: (h, w) of the heatmaps; the input must be exactly (4h, 4w).
        block: 'res18' | 'rsb' | 'bottleneck' (see :data:`BLOCKS`) or a project's block as 'module:Class' (the
            constructor and ``expansion`` of :class:`~cvpack.modeling.megvii_blocks.RSB`; ``conv_bn_relu3`` for
            ``zero_init_residual``); blocks: blocks per layer, e.g. (2, 2, 2, 2).
        stage_num: number of stages; stage s < stage_num-1 feeds skip1/skip2/cross_conv to stage s+1.
        up_channels: decoder width (MODEL.UPSAMPLE_CHANNEL_NUM).
        efficient: activation checkpointing per conv unit (RUN_EFFICIENT).
        zero_init_residual: zero the last BN of every residual branch.
        prm: apply the Pose Refine Machine to each stage's finest heatmap (off in every released exp).
        conv_bias: conv biases in every conv unit (MODEL.CONV_BIAS). True = the Megvii originals' layout;
            False = mmpose's (``ConvModule`` drops the bias before BN). This is the whole parameter-count
            difference between the two implementations (RSN-18: 9,159,072 vs 9,144,936 = the 14,136 conv output
            channels); the functions they can compute are the same. Imported mmpose weights set it to False
            (cvpack.weights.mmpose).
        loss: keyword arguments of :func:`megvii_loss` (ohkm, topk, coarse_to_fine, mask).
    """

    def __init__(self, num_keypoints, output_shape, block='rsb', blocks=(2, 2, 2, 2), stage_num=1, up_channels=256,
                 efficient=False, zero_init_residual=False, prm=False, loss: Optional[dict] = None, conv_bias=True):
        super().__init__()
        block = block_class(block)
        if len(blocks) != 4 or stage_num < 1:
            raise ValueError('need 4 block counts and >= 1 stage, got blocks=%s stage_num=%s' % (blocks, stage_num))
        self.output_shape = tuple(int(v) for v in output_shape)
        self.stage_num = stage_num
        self.loss_kwargs = dict(loss or {})
        self.original_eval = False   # True: the eval forward runs every head, up_conv after the resize (see forward)
        self.top = Stem(efficient, conv_bias)
        for s in range(stage_num):
            last = s == stage_num - 1
            setattr(self, 'stage%d' % s, SingleStage(block, blocks, num_keypoints, up_channels, has_skip=s > 0,
                                                     gen_skip=not last, gen_cross_conv=not last, efficient=efficient,
                                                     zero_init_residual=zero_init_residual, prm=prm, bias=conv_bias))

    def forward_stages(self, images, eval_form=False):
        """images: (N, 3, 4h, 4w) -> list over stages of 4 heatmaps (N, K, h, w), coarse (1/32) to fine (1/4).

        ``eval_form`` (eval mode): the same last-stage finest heatmap with less work. Only its head runs
        (every other entry is then None; the features that feed the next unit and stage are the same), and the
        decoder units apply up_conv before the resize (:meth:`UpsampleUnit.forward`: the same function, float
        rounding aside). Training keeps the original form: BN batch statistics would change under the swap.
        """
        h, w = self.output_shape
        if images.dim() != 4 or tuple(images.shape[-2:]) != (4 * h, 4 * w):
            raise ValueError('input of shape %s does not match OUTPUT_SHAPE %s: the network expects (N, 3, %d, %d) '
                             '(INPUT_SHAPE must be 4x OUTPUT_SHAPE)' % (tuple(images.shape), (h, w), 4 * h, 4 * w))
        x = self.top(images)
        skip1 = skip2 = None
        outputs = []
        for s in range(self.stage_num):
            last = s == self.stage_num - 1
            heads = (False, False, False, last) if eval_form else (True,) * 4
            res, skip1, skip2, x = getattr(self, 'stage%d' % s)(x, skip1, skip2, self.output_shape, heads, eval_form)
            outputs.append(res)
        return outputs

    def forward(self, images, targets=None):
        """images: (N, 3, H, W) normalised (BGR, per cfg.INPUT), H, W = 4x OUTPUT_SHAPE.

        Training (self.training and targets given; targets['target'] (N, L>=5, K, h, w) peak 255,
        targets['target_weight'] (N, K) visibility 0/1/2): returns the per-stage, per-level loss terms
        ``{'loss_s{s}_l{j}': scalar}`` (coarse levels already x0.25); their sum is the original total_loss.
        Eval: the last stage's finest heatmaps (N, K, h, w) in heatmap pixels (stride 4 of the input crop).

        The eval forward takes the eval form of :meth:`forward_stages`: only the returned head runs (the other
        heads feed only the training loss; the originals ran them at test time and dropped their output) and
        up_conv runs before the resize: 13.5 % fewer MACs for RSN-18, 23.6 % for 4xRSN-18, 8.2 % for MSPN-2stg
        (docs/SPEED.md, "The eval forward's shortcuts"). ``original_eval = True`` runs the originals' form
        (cvpack.tools.complexity counts the network that way, like docs/reference/rsn_mspn.md §8).
        """
        if self.training and targets is not None:
            return megvii_loss(self.forward_stages(images), targets['target_weight'], targets['target'],
                               **self.loss_kwargs)
        eval_form = not self.training and not self.original_eval
        return self.forward_stages(images, eval_form=eval_form)[-1][-1]


def block_class(block):
    """Encoder block class of ``block``: a class, a key of :data:`BLOCKS` or a 'module:Class' string."""
    if isinstance(block, type):
        return block
    if block in BLOCKS:
        return BLOCKS[block]
    if ':' in str(block):
        return import_target(block, 'encoder block', class_only=True)
    raise KeyError("unknown encoder block %r; known: %s, or a 'module:Class'" % (block, sorted(BLOCKS)))


def build_multistage(cfg, cls=MultiStageNet, **kwargs) -> MultiStageNet:
    """Build from an exp config: MODEL.BACKBONE (see :data:`BACKBONES`; or a project's block as 'module:Class',
    then MODEL.BLOCKS gives the blocks per layer), MODEL.BLOCKS (None = the backbone's),
    MODEL.STAGE_NUM, MODEL.UPSAMPLE_CHANNEL_NUM, MODEL.PRM, MODEL.ZERO_INIT_RESIDUAL, MODEL.CONV_BIAS (default True),
    RUN_EFFICIENT, LOSS.*. ``cls``: a :class:`MultiStageNet` subclass (MSPN adds its ImageNet init), built with
    these arguments plus ``kwargs``."""
    m = cfg.MODEL
    if ':' in str(m.BACKBONE):          # a project's block: 'module:Class' (import errors name MODEL.BACKBONE)
        if not m.BLOCKS:
            raise ValueError('MODEL.BACKBONE %r (a block class) needs MODEL.BLOCKS, e.g. [2, 2, 2, 2]' % m.BACKBONE)
        block, blocks = import_target(m.BACKBONE, 'MODEL.BACKBONE', class_only=True), None
    elif m.BACKBONE not in BACKBONES:
        raise KeyError("MODEL.BACKBONE %r unknown; known: %s, or a block 'module:Class'"
                       % (m.BACKBONE, sorted(BACKBONES)))
    else:
        block, blocks = BACKBONES[m.BACKBONE]
    blocks = tuple(m.BLOCKS or blocks)
    in_h, in_w = cfg.INPUT_SHAPE
    out_h, out_w = cfg.OUTPUT_SHAPE
    if (in_h, in_w) != (4 * out_h, 4 * out_w):
        raise ValueError('%s: INPUT_SHAPE %s must be 4x OUTPUT_SHAPE %s for the Megvii networks'
                         % (cfg.EXP_NAME, list(cfg.INPUT_SHAPE), list(cfg.OUTPUT_SHAPE)))
    loss = dict(ohkm=cfg.LOSS.OHKM, topk=cfg.LOSS.TOPK, coarse_to_fine=cfg.LOSS.COARSE_TO_FINE,
                mask=cfg.LOSS.MASK)
    return cls(num_keypoints=cfg.DATASET.KEYPOINT.NUM, output_shape=cfg.OUTPUT_SHAPE, block=block, blocks=blocks,
               stage_num=m.STAGE_NUM, up_channels=m.UPSAMPLE_CHANNEL_NUM,
               efficient=bool(cfg.RUN_EFFICIENT),
               zero_init_residual=bool(m.ZERO_INIT_RESIDUAL), prm=bool(m.PRM),
               loss=loss, conv_bias=bool(m.CONV_BIAS), **kwargs)
