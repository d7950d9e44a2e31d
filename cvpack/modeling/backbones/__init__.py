"""Backbone builders, one per family (timm style); each family keeps its table of variants."""
from .resnet import RESNET_VARIANTS, TORCHVISION_URLS, FrozenBatchNorm2d, ResNet, build_resnet  # noqa: F401
from .resnest import RESNEST_VARIANTS, ResNeSt, build_resnest  # noqa: F401
from .hsrnet import HSRNET_VARIANTS, HSRNet, build_hsrnet  # noqa: F401
