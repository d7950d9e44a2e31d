"""ResNet / HSR-MSNet blocks: constructor arguments are checked, not swallowed."""
import pytest

from cvpack.modeling.backbones.hsrnet import SplitSEBottleneck
from cvpack.modeling.backbones.resnet import BasicBlock, Bottleneck, FrozenBatchNorm2d, ResNet


@pytest.mark.parametrize('block', [BasicBlock, Bottleneck, SplitSEBottleneck])
def test_blocks_reject_misspelled_arguments(block):
    """BasicBlock and the split+SE bottleneck used to swallow unknown keywords (``**_``): a typo built a default
    block."""
    with pytest.raises(TypeError, match='strid'):
        block(64, 64, strid=2)


def test_block_arguments_are_used():
    assert isinstance(BasicBlock(64, 64, norm='FrozenBN').bn1, FrozenBatchNorm2d)
    assert SplitSEBottleneck(64, 32, stride=2).conv2.stride == (2, 2)
    # stride_in_1x1 is a Bottleneck option; the basic-block variants ignore it (as Detectron2)
    r18 = ResNet('resnet18', num_layers=2, stride_in_1x1=True)
    assert r18.layer2[0].conv1.stride == (2, 2) and r18.out_channels == [64, 128]
    r50 = ResNet('resnet50', num_layers=2, stride_in_1x1=True)
    assert r50.layer2[0].conv1.stride == (2, 2) and r50.layer2[0].conv2.stride == (1, 1)
