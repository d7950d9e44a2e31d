"""MLPE (Shao et al., ICRA 2021) on the cvpack core: model, losses, builder."""
from .config import add_mlpe_config  # noqa: F401
from .hrfine import HRFineNet, RefineBottleneck  # noqa: F401
from .loss import global_loss, refine_loss  # noqa: F401
from .model import MLPE, build_model  # noqa: F401
from .multilevel import ContextFusion, MultiLevelNet  # noqa: F401
