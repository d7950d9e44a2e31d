"""Encoder blocks of the Megvii multi-stage networks, with the original child names (docs/reference/rsn_mspn.md §1).

Every block takes ``(in_planes, planes, stride=1, downsample=None, efficient=False, bias=True)``
(``bias``: conv biases, see :class:`ConvBnRelu`), registers its conv units
first and ``downsample`` (the projection shortcut, a :class:`ConvBnRelu` without ReLU) last, as the originals do,
so state_dict order matches. ``out_planes`` is the block's output width.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBnRelu


class _Residual(nn.Module):
    expansion = 1

    def _finish(self, out, x):
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(out + x, inplace=True)


class Res18Block(_Residual):
    """RSN repo's "Res18" block (docs/reference/rsn_mspn.md §1.2): 1x1 in->p, 3x3 p->p with the stride, 1x1 p->p (no
    ReLU), + shortcut, ReLU.

    Not torchvision's BasicBlock: ImageNet ResNet-18 weights do not fit it.
    """
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None, efficient=False, bias=True):
        super().__init__()
        self.conv_bn_relu1 = ConvBnRelu(in_planes, planes, 1, 1, 0, efficient=efficient, bias=bias)
        self.conv_bn_relu2 = ConvBnRelu(planes, planes, 3, stride, 1, efficient=efficient, bias=bias)
        self.conv_bn_relu3 = ConvBnRelu(planes, planes * self.expansion, 1, 1, 0, has_relu=False, efficient=efficient,
                                        bias=bias)
        self.downsample = downsample
        self.out_planes = planes * self.expansion

    def forward(self, x):
        """x: (N, in, H, W) -> (N, planes * expansion, H/stride, W/stride) (expansion 1 here, 4 in Bottleneck)."""
        return self._finish(self.conv_bn_relu3(self.conv_bn_relu2(self.conv_bn_relu1(x))), x)


class Bottleneck(Res18Block):
    """MSPN's ResNet-50 v1.5 bottleneck (docs/reference/rsn_mspn.md §1.5): as :class:`Res18Block` with expansion 4 (1x1
    p -> 4p last)."""
    expansion = 4


class RSB(_Residual):
    """Residual Steps Block (RSN, docs/reference/rsn_mspn.md §1.3): four steps of 1..4 chained 3x3 units over channel
    chunks.

    Branch width b = in_planes * 26 // 64 (from the *input* width, as the original). ``conv_bn_relu1`` (1x1,
    carries the stride) makes 4 chunks of b; unit (i, j) takes unit (i, j-1) (or chunk i when j = 1) plus, for
    j < i, unit (i-1, j); the last unit of each step is concatenated and fused by ``conv_bn_relu3`` (no ReLU).
    """
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, downsample=None, efficient=False, bias=True):
        super().__init__()
        b = self.branch_ch = in_planes * 26 // 64
        self.conv_bn_relu1 = ConvBnRelu(in_planes, 4 * b, 1, stride, 0, efficient=efficient, bias=bias)
        for i in range(1, 5):
            for j in range(1, i + 1):
                setattr(self, 'conv_bn_relu2_%d_%d' % (i, j),
                        ConvBnRelu(b, b, 3, 1, 1, efficient=efficient, bias=bias))
        self.conv_bn_relu3 = ConvBnRelu(4 * b, planes * self.expansion, 1, 1, 0, has_relu=False, efficient=efficient,
                                        bias=bias)
        self.downsample = downsample
        self.out_planes = planes * self.expansion

    def forward(self, x):
        """x: (N, in, H, W) -> (N, planes * expansion, H/stride, W/stride) (expansion 1 here, 4 in Bottleneck)."""
        chunks = torch.split(self.conv_bn_relu1(x), self.branch_ch, 1)
        prev, ends = [], []                       # prev: outputs of step i-1, by j
        for i in range(1, 5):
            cur = []
            for j in range(1, i + 1):
                inp = chunks[i - 1] if j == 1 else cur[-1]
                if j < i:
                    inp = inp + prev[j - 1]
                cur.append(getattr(self, 'conv_bn_relu2_%d_%d' % (i, j))(inp))
            ends.append(cur[-1])
            prev = cur
        return self._finish(self.conv_bn_relu3(torch.cat(ends, 1)), x)


class PRM(nn.Module):
    """Pose Refine Machine, Megvii version (the unused class of RSN's 4XRSN18 network.py, docs/reference/rsn_mspn.md
    §1.4).

    out = a * (1 + g * h), a = CBR3x3(x); g = sigmoid(CBR1x1(CBR1x1(avgpool(a)))) (N, K, 1, 1);
    h = sigmoid(CBR_dw9x9(CBR1x1(a))) (N, K, H, W). Both gates follow a ReLU, so they lie in [0.5, 1).
    5,100 params for K = 17. Note: BN on the pooled 1x1 map cannot train with batch 1 (as the original).
    """

    def __init__(self, channels, efficient=False):
        super().__init__()
        k = channels
        self.conv_bn_relu_prm_1 = ConvBnRelu(k, k, 3, 1, 1, efficient=efficient)
        self.conv_bn_relu_prm_2_1 = ConvBnRelu(k, k, 1, 1, 0, efficient=efficient)
        self.conv_bn_relu_prm_2_2 = ConvBnRelu(k, k, 1, 1, 0, efficient=efficient)
        self.conv_bn_relu_prm_3_1 = ConvBnRelu(k, k, 1, 1, 0, efficient=efficient)
        self.conv_bn_relu_prm_3_2 = ConvBnRelu(k, k, 9, 1, 4, efficient=efficient, groups=k)

    def forward(self, x):
        """x: heatmaps (N, K, H, W) -> refined heatmaps (N, K, H, W), same frame."""
        a = self.conv_bn_relu_prm_1(x)
        g = torch.sigmoid(self.conv_bn_relu_prm_2_2(self.conv_bn_relu_prm_2_1(F.adaptive_avg_pool2d(a, 1))))
        h = torch.sigmoid(self.conv_bn_relu_prm_3_2(self.conv_bn_relu_prm_3_1(a)))
        return a * (1 + g * h)


BLOCKS = {'res18': Res18Block, 'rsb': RSB, 'bottleneck': Bottleneck}
