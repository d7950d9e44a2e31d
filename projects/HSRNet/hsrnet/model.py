"""HSRNet / HSR-MSNet pose network: stride-16 backbone + 2-deconvolution Simple Baselines head.

docs/reference/mlpe_hsrnet_gcpose.md §2.1-2.5: the backbone keeps output stride 16 with DetNet stages, so
two stride-2 deconvolutions reach the stride-4 heatmaps (64x48 at 256x192). Loss: JointsMSELoss with
target weights. Heatmaps are on Simple Baselines' unit-peak scale.
"""
import logging

from torch import nn

from cvpack.modeling.backbones import build_hsrnet
from cvpack.modeling.backbones.hsrnet import imagenet_key_map
from cvpack.modeling.deconv_head import DeconvHead
from cvpack.modeling.losses import JointsMSELoss
from cvpack.modeling.pretrained import load_mapped, load_state_dict

logger = logging.getLogger(__name__)  # 'projects.HSRNet...': the engine configures the 'projects' tree too


class HSRNetPose(nn.Module):
    """Top-down pose network (DESIGN.md model contract).

    Args:
        backbone: a key of ``HSRNET_VARIANTS`` ('hsrnet59' ... 'hsr_msnet161').
        num_joints: heatmap channels (17 for COCO).
        deconv_filters: channels per deconvolution (the original: 2 x 256).
        deconv_kernel: 2, 3 or 4 for every deconvolution (the README's kernel ablation).
        final_kernel: 1 or 3.
        use_target_weight: JointsMSELoss weighting by the per-joint target weight.
    """

    def __init__(self, backbone='hsrnet59', num_joints=17, deconv_filters=(256, 256), deconv_kernel=4,
                 final_kernel=1, use_target_weight=True):
        super().__init__()
        self.backbone = build_hsrnet(backbone)
        self.head = DeconvHead(self.backbone.out_channels[-1], num_joints, filters=tuple(deconv_filters),
                               kernels=(deconv_kernel,) * len(deconv_filters), final_kernel=final_kernel)
        self.criterion = JointsMSELoss(use_target_weight)

    def forward(self, images, targets=None):
        """Args:
            images: (N, 3, H, W) normalised crops (H, W = cfg.INPUT_SHAPE).
            targets: training batch dict with ``target`` (N, K, H/4, W/4) unit-peak Gaussians and
                ``target_weight`` (N, K) 0/1.

        Returns:
            training (``self.training`` and targets given): ``{'joints_mse': scalar}``;
            otherwise heatmaps (N, K, H/4, W/4) in input-crop heatmap pixels (stride 4), peak about 1.
        """
        heatmaps = self.head(self.backbone(images))
        if self.training and targets is not None:
            loss = self.criterion(heatmaps, targets['target'], targets.get('target_weight'))
            return {'joints_mse': loss}
        return heatmaps

    def load_pretrained(self, source):
        """ImageNet init (the trainer calls it when starting from scratch); see :func:`load_imagenet`."""
        return load_imagenet(self, source)


def load_imagenet(model: HSRNetPose, source):
    """Load a torchvision-format ImageNet ResNet-50/101/152 state dict into the stem and layer1-3.

    The key map is explicit (:func:`imagenet_key_map`): layer4 and fc are dropped; in HSR-MSNet the
    ``conv2``/``bn2`` of stride-1 blocks have no counterpart (replaced by the split) and are reported
    as unused. The DetNet stages and the head keep their init (the original's 110/161 configs did the same).

    Returns:
        the :class:`cvpack.modeling.pretrained.LoadReport` (also logged).
    """
    state = load_state_dict(source) if isinstance(source, str) else source
    report = load_mapped(model.backbone, state, imagenet_key_map)
    logger.info('ImageNet weights from %s into %s: %s', source if isinstance(source, str) else '<state dict>',
                model.backbone.name, report.summary())
    if report.unused:
        groups = {}
        for key in report.unused:   # e.g. fc, layer4, and in HSR-MSNet layer1-3 conv2/bn2 of stride-1 blocks
            parts = key.split('.')
            name = parts[0] if key.startswith(('fc.', 'layer4.')) else '%s.*.%s' % (parts[0], parts[2])
            groups[name] = groups.get(name, 0) + 1
        logger.info('unused ImageNet tensors: %s', ', '.join('%s: %d' % kv for kv in sorted(groups.items())))
    return report


def build_model(cfg) -> HSRNetPose:
    """Build the pose network from ``cfg.MODEL`` keys set by :func:`add_hsrnet_config`.

    MODEL.PRETRAINED is not read here: the trainer calls ``model.load_pretrained(source)`` when a run starts
    from scratch, so test.py and resumed runs never download anything.
    """
    m = cfg.MODEL
    if not cfg.get('INPUT_SHAPE') or len(cfg.INPUT_SHAPE) != 2:
        # no silent default: the heatmap size, the targets and the test-time crop all follow INPUT_SHAPE
        raise ValueError('%s: HSRNet needs INPUT_SHAPE (h, w) in the config (e.g. [256, 192]), got %r'
                         % (cfg.EXP_NAME, cfg.get('INPUT_SHAPE')))
    h, w = cfg.INPUT_SHAPE
    # Stride-16 backbone + two x2 deconvolutions: heatmaps are exactly input / 4 only for multiples of 16.
    if h % 16 or w % 16:
        raise ValueError('%s: HSRNet needs INPUT_SHAPE divisible by 16, got %s'
                         % (cfg.EXP_NAME, list(cfg.INPUT_SHAPE)))
    if 'OUTPUT_SHAPE' in cfg and list(cfg.OUTPUT_SHAPE) != [h // 4, w // 4]:
        raise ValueError('%s: OUTPUT_SHAPE %s must be INPUT_SHAPE / 4 = %s'
                         % (cfg.EXP_NAME, list(cfg.OUTPUT_SHAPE), [h // 4, w // 4]))
    model = HSRNetPose(backbone=m.BACKBONE, num_joints=cfg.DATASET.KEYPOINT.NUM,
                       deconv_filters=m.NUM_DECONV_FILTERS, deconv_kernel=m.DECONV_KERNEL,
                       final_kernel=m.FINAL_CONV_KERNEL, use_target_weight=cfg.LOSS.USE_TARGET_WEIGHT)
    return model
