"""ConvBnRelu: original state-dict layout, checkpointing without a second BN update, BN folding."""
import torch
from torch import nn

from cvpack.modeling.layers import ConvBnRelu, fuse_conv_bn
from cvpack.modeling.megvii_blocks import RSB


def test_unit_layout():
    unit = ConvBnRelu(4, 6, 3, 1, 1)
    assert list(unit.state_dict()) == ['conv.weight', 'conv.bias', 'bn.weight', 'bn.bias', 'bn.running_mean',
                                       'bn.running_var', 'bn.num_batches_tracked']   # docs/reference/rsn_mspn.md §1.1:
                                                                                     # 7 entries
    grouped = ConvBnRelu(6, 6, 9, 1, 4, groups=6, has_relu=False)
    assert grouped.conv.weight.shape == (6, 1, 9, 9)
    assert (grouped(torch.randn(1, 6, 5, 5)) < 0).any()   # no ReLU


def test_efficient_unit_updates_bn_once_with_equal_grads():
    torch.manual_seed(0)
    a = ConvBnRelu(3, 5, 3, 1, 1, efficient=True)
    b = ConvBnRelu(3, 5, 3, 1, 1)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 6, 6)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (a(xa) ** 2).sum().backward()
    (b(xb) ** 2).sum().backward()
    assert a.bn.num_batches_tracked.item() == 1   # the original reentrant checkpoint gave 2 (docs/reference/defects.md
                                                  # R#5)
    assert torch.allclose(a.bn.running_mean, b.bn.running_mean) and torch.allclose(a.bn.running_var, b.bn.running_var)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-6) and torch.allclose(a.conv.weight.grad, b.conv.weight.grad,
                                                                          atol=1e-5)


def test_fuse_conv_bn_same_eval_output():
    torch.manual_seed(0)
    block = RSB(32, 32)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    block.eval()
    fused = fuse_conv_bn(block)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in block.modules())   # the original is untouched
    x = torch.randn(2, 32, 8, 6)
    with torch.no_grad():
        assert torch.allclose(fused(x), block(x), rtol=1e-4, atol=1e-4)
