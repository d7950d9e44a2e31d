"""MLPE = ResNeSt trunk + multi-level prediction net + high-resolution fine-tuning net
(docs/reference/mlpe_hsrnet_gcpose.md §1.1).

Fixes of the released code (docs/reference/mlpe_hsrnet_gcpose.md §1.11): the forward uses the multi-level net by its
real name (the original called a non-existent ``global_net``), the context branch works at any input size, and the
unused C4-C2 laterals are an option that is not built when off.
"""
import logging

from torch import nn

from cvpack.modeling.backbones.resnest import build_resnest, load_official_weights

from .hrfine import HRFineNet
from .loss import global_loss, refine_loss
from .multilevel import MultiLevelNet

logger = logging.getLogger(__name__)


class MLPE(nn.Module):
    """MLPE pose network; keyword arguments only (eight settings, easily swapped by position).

    Args (the ``cfg`` key each comes from, see :func:`build_model`):
        backbone: 'resnest50' | 'resnest101' (MODEL.BACKBONE).
        num_joints: K, heatmap channels (MODEL.OUTPUT_NUM).
        feature_retention: build the C5 context-fusion branch, the README's "feature retention"
            (MODEL.FEATURE_RETENTION).
        pred_kernel: 1 or 3, the prediction conv's kernel (MODEL.PRED_KERNEL).
        upsample: 'bilinear' | 'deconv' (MODEL.UPSAMPLE).
        lateral_skips: CPN-style lateral skips (MODEL.LATERAL_SKIPS).
        topk: joints kept by online hard keypoint mining in the refine loss (LOSS.TOPK).
        use_ohkm: apply that mining (LOSS.OHKM).
    """

    def __init__(self, *, backbone='resnest50', num_joints=17, feature_retention=True, pred_kernel=3,
                 upsample='deconv', lateral_skips=False, topk=8, use_ohkm=True):
        super().__init__()
        self.backbone = build_resnest(backbone)
        self.multilevel_net = MultiLevelNet(self.backbone.out_channels[::-1], num_joints,
                                            feature_retention=feature_retention, pred_kernel=pred_kernel,
                                            upsample=upsample, lateral_skips=lateral_skips)
        self.refine_net = HRFineNet(num_joints=num_joints, pred_kernel=pred_kernel, upsample=upsample)
        self.topk, self.use_ohkm = topk, use_ohkm
        self.original_eval = False   # True: the eval forward also runs the multi-level heads (see forward)

    def forward(self, images, targets=None):
        """Args:
            images: (N, 3, H, W), RGB minus mean/255 (cpn pipeline); H, W multiples of 32; N >= 2 in training.
            targets: the collated batch dict with ``target`` (N, 4, K, H/4, W/4), peak 255, kernels
                coarse to fine, and ``target_weight`` (N, K) visibility 0/1/2.

        Returns:
            training with targets: {'global_loss', 'refine_loss'} scalars;
            otherwise the final heatmaps (N, K, H/4, W/4) on the input-crop stride-4 grid (peak ~255).

        In eval mode the multi-level net's four heatmap heads do not run: they feed only the global loss, and
        the refined heatmaps do not depend on them (the same tensor, bit for bit). ``original_eval = True`` runs
        them, as the released code does; cvpack.tools.complexity counts the network that way.
        """
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            # the three x2 upsamplings from C5 must land on the stride-4 grid
            raise ValueError('MLPE needs an input size divisible by 32, got %s' % (tuple(images.shape[-2:]),))
        if self.training and images.shape[0] < 2:
            # torch's own message ("Expected more than 1 value per channel when training") named no setting
            raise ValueError('MLPE trains on at least 2 crops per process (SOLVER.IMS_PER_GPU), got a batch of %d: '
                             "ResNeSt's split attention applies BatchNorm to globally pooled (N, C, 1, 1) features, "
                             'which needs more than one value per channel' % images.shape[0])
        feats = self.backbone(images)[::-1]           # [C5, C4, C3, C2]
        levels, global_maps = self.multilevel_net(feats, heads=self.training or self.original_eval)
        refined = self.refine_net(levels)
        if not (self.training and targets is not None):
            return refined
        target, weight = targets['target'], targets['target_weight']
        if target.dim() != 5 or target.shape[1] != len(global_maps):
            raise ValueError('MLPE expects target (N, %d, K, h, w), got %s' % (len(global_maps), tuple(target.shape)))
        return {'global_loss': global_loss(global_maps, target, weight),
                'refine_loss': refine_loss(refined, target[:, -1], weight, self.topk, self.use_ohkm)}

    def load_pretrained(self, source):
        """Official ResNeSt ImageNet weights (path or URL) into the trunk; the trainer calls it when a run
        starts from scratch. Returns the LoadReport."""
        report = load_official_weights(self.backbone, source)
        logger.info('ResNeSt ImageNet weights from %s: %s', source, report.summary())
        return report


def build_model(cfg) -> MLPE:
    """MLPE from ``cfg.MODEL`` (BACKBONE, FEATURE_RETENTION, PRED_KERNEL, UPSAMPLE, LATERAL_SKIPS,
    OUTPUT_NUM) and ``cfg.LOSS`` (OHKM, TOPK). MODEL.PRETRAINED (official ResNeSt ImageNet weights, path/URL)
    is not read here: the trainer calls :meth:`MLPE.load_pretrained` when a run starts from scratch."""
    m = cfg.MODEL
    h, w = cfg.INPUT_SHAPE
    # The heatmaps are INPUT_SHAPE / 4 whatever OUTPUT_SHAPE says, and the codec's stride is INPUT / OUTPUT:
    # INPUT_SHAPE [384, 288] over a 256x192 exp (OUTPUT_SHAPE left at [64, 48]) decoded the 96x72 maps with
    # stride 6 instead of 4, every keypoint misplaced without an error.
    if h % 32 or w % 32:
        raise ValueError('%s: MLPE needs INPUT_SHAPE divisible by 32, got %s' % (cfg.EXP_NAME, list(cfg.INPUT_SHAPE)))
    if list(cfg.OUTPUT_SHAPE) != [h // 4, w // 4]:
        raise ValueError('%s: OUTPUT_SHAPE %s must be INPUT_SHAPE / 4 = %s'
                         % (cfg.EXP_NAME, list(cfg.OUTPUT_SHAPE), [h // 4, w // 4]))
    return MLPE(backbone=m.BACKBONE, num_joints=m.OUTPUT_NUM, feature_retention=m.FEATURE_RETENTION,
                pred_kernel=m.PRED_KERNEL, upsample=m.UPSAMPLE, lateral_skips=m.LATERAL_SKIPS,
                topk=cfg.LOSS.TOPK, use_ohkm=cfg.LOSS.OHKM)
