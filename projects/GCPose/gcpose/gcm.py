"""Global Context Module (GCM) of GCPose: a pre-activation BoTNet-style MHSA block with 2-D relative positions.

docs/reference/mlpe_hsrnet_gcpose.md §3.3. For x (C = 512, 14 x 14):
    y = x + MHSA(ReLU(BN1(x)));  out = y + Conv3x3(ReLU(BN2(y)))
MHSA: 4 heads, d_qk = d_v = 128; q, k from one bias-free 1x1 conv C -> 2 * 4 * 128, v from C -> 4 * 128;
logit(i -> j) = q_i . k_j + q_i . r^w[x_j - x_i] + q_i . r^h[y_j - y_i] with q scaled by 128^-1/2.
"""
import torch
from torch import nn


def relative_logits(q, rel_h, rel_w, hw):
    """2-D relative position logits.

    Args:
        q: (B, heads, N, d) queries, tokens in row-major order (N = H * W, token = y * W + x).
        rel_h: (2H - 1, d), rel_w: (2W - 1, d) tables; row k holds offset k - (H - 1) (resp. W - 1),
            the layout of BoTNet's pad-and-reshape ``rel_to_abs`` (absolute index = j - i + L - 1).
        hw: (H, W).
    Returns:
        (B, heads, N, N) with entry [i, j] = q_i . rel_w[x_j - x_i + W - 1] + q_i . rel_h[y_j - y_i + H - 1].
    """
    H, W = hw
    B, nh, N, d = q.shape
    dev = q.device
    qw = q @ rel_w.t()                                   # (B, nh, N, 2W-1)
    qh = q @ rel_h.t()                                   # (B, nh, N, 2H-1)
    xs = torch.arange(W, device=dev)
    ys = torch.arange(H, device=dev)
    x_of = xs.repeat(H)                                  # token -> x
    y_of = ys.repeat_interleave(W)                       # token -> y
    # Gather by relative offset: a vectorised equivalent of the pad-and-reshape trick.
    idx_w = (x_of[None, :] - x_of[:, None] + W - 1).expand(B, nh, N, N)
    idx_h = (y_of[None, :] - y_of[:, None] + H - 1).expand(B, nh, N, N)
    return torch.gather(qw, 3, idx_w) + torch.gather(qh, 3, idx_h)


class RelPosMHSA(nn.Module):
    """Multi-head self-attention over a fixed H x W grid with learned 2-D relative positions."""

    def __init__(self, channels=512, size=(14, 14), heads=4, dim_qk=128, dim_v=128):
        super().__init__()
        self.heads, self.dim_qk, self.dim_v, self.size = heads, dim_qk, dim_v, tuple(size)
        self.qk = nn.Conv2d(channels, 2 * heads * dim_qk, 1, bias=False)
        self.v = nn.Conv2d(channels, heads * dim_v, 1, bias=False)
        H, W = self.size
        self.rel_h = nn.Parameter(torch.randn(2 * H - 1, dim_qk) * dim_qk ** -0.5)
        self.rel_w = nn.Parameter(torch.randn(2 * W - 1, dim_qk) * dim_qk ** -0.5)

    def forward(self, x):
        """Args: x (R, C, H, W) RoI features on the RoI's H x W sampling grid, (H, W) = self.size; R may be 0.
        Returns: (R, heads * dim_v, H, W) attention output on the same grid (token y * W + x = grid cell (y, x));
            relative positions are grid-cell offsets inside one RoI, not image coordinates.
        """
        R, _, H, W = x.shape
        # No early return for R == 0: every op below handles an empty batch, and running them keeps each
        # parameter in the autograd graph (zero gradient), which DDP needs when a rank has no keypoint RoI.
        if (H, W) != self.size:
            raise ValueError('GCM relative tables are tied to %s features, got %s' % (self.size, (H, W)))
        q, k = self.qk(x).chunk(2, dim=1)
        q = q.reshape(R, self.heads, self.dim_qk, H * W).transpose(2, 3) * self.dim_qk ** -0.5
        k = k.reshape(R, self.heads, self.dim_qk, H * W)
        v = self.v(x).reshape(R, self.heads, self.dim_v, H * W)
        logits = q @ k + relative_logits(q, self.rel_h, self.rel_w, (H, W))
        attn = logits.softmax(dim=-1)                                       # (R, nh, N, N)
        out = v @ attn.transpose(2, 3)                                      # (R, nh, dv, N)
        return out.reshape(R, self.heads * self.dim_v, H, W)


class GCM(nn.Module):
    """y = x + MHSA(ReLU(BN1(x))); out = y + Conv3x3(ReLU(BN2(y))) (pre-activation, docs/reference/mlpe_hsrnet_gcpose.md
    §3.3)."""

    def __init__(self, channels=512, size=(14, 14), heads=4, dim=128):
        super().__init__()
        if heads * dim != channels:
            raise ValueError('GCM needs heads * dim == channels for the residual (%d * %d != %d)'
                             % (heads, dim, channels))
        self.norm1 = nn.BatchNorm2d(channels)
        self.mhsa = RelPosMHSA(channels, size, heads, dim, dim)
        self.norm2 = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        """Args: x (R, C, H, W) keypoint RoI features (C = 512, 14 x 14 grid over the enlarged RoI); R may be 0.
        Returns: (R, C, H, W) on the same grid: y = x + MHSA(ReLU(BN1(x))), out = y + Conv3x3(ReLU(BN2(y))).
        """
        # an empty batch runs through too (zero gradients for DDP, see RelPosMHSA.forward)
        y = x + self.mhsa(self.relu(self.norm1(x)))
        return y + self.conv(self.relu(self.norm2(y)))
