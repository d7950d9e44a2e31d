"""MSPN models: the shared Megvii multi-stage network with ResNet-50 encoders, ImageNet-initialised."""
import logging

from cvpack.modeling.multistage import MultiStageNet, build_multistage
from cvpack.modeling.pretrained import load_state_dict

from .imagenet import load_imagenet_resnet

logger = logging.getLogger(__name__)


class MSPN(MultiStageNet):
    """The shared Megvii multi-stage network plus MSPN's ImageNet init (RSN, same class otherwise, has none).

    Args:
        bgr_input: the network sees BGR images (DATASET.COLOR_RGB False, the originals), so the RGB
            torchvision stem filters are flipped on loading.
        *args, **kwargs: :class:`cvpack.modeling.multistage.MultiStageNet`'s.
    """

    def __init__(self, *args, bgr_input=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.bgr_input = bgr_input

    def load_pretrained(self, source):
        """ImageNet init from ``source`` (path or URL of a torchvision-format ResNet-50 state dict): every
        stage's encoder and the stem (see :func:`load_imagenet_resnet`); the trainer calls it when a run starts
        from scratch (:class:`cvpack.protocols.PretrainedInit`). Returns the LoadReport."""
        report = load_imagenet_resnet(self, load_state_dict(source), bgr_input=self.bgr_input)
        logger.info('ImageNet init from %s: %s', source, report.summary())
        return report


def build_model(cfg) -> MSPN:
    """Build the MSPN of ``cfg``. MODEL.PRETRAINED is not read here: the trainer calls
    ``model.load_pretrained(source)`` when a run starts from scratch (docs/ENGINE.md, "Initial weights").
    The input colour order (DATASET.COLOR_RGB) decides whether the stem filters are flipped.
    """
    return build_multistage(cfg, cls=MSPN, bgr_input=not cfg.DATASET.COLOR_RGB)
