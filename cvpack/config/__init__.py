"""Plain-Python experiment configs.

An exp's ``config.py`` builds its ``cfg`` from one of the presets here and overrides only what differs
from it, keeping the original Megvii key names (``DATASET``, ``INPUT``, ``MODEL``, ``SOLVER``, ``LOSS``,
``TEST``, ``OUTPUT_DIR`` ...). Building a config has no side effects: nothing is created on disk and no
environment variable is read. ``python config.py -log`` (see :func:`config_main`) is the one place that
creates the log folder and links it into the exp folder, as the original repos did.
"""
from .base import (  # noqa: F401
    base_config, config_main, dark_kernel, dump_config, find_repo_root, merge_from_list, to_plain,
)
from .frozen import FrozenConfig, FrozenConfigError, clone, freeze, is_frozen  # noqa: F401
from .schema import SCHEMA, ConfigError, validate_config  # noqa: F401

