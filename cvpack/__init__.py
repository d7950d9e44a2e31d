"""cvpack: the shared core of the pose toolbox (data, engine, models, evaluation)."""
__version__ = '0.1.0'


def load_exp(exp_dir, opts=None):
    """Return ``(cfg, model)`` for the exp folder ``exp_dir`` (see :mod:`cvpack.exp`)."""
    from .exp import load_exp as _load_exp
    return _load_exp(exp_dir, opts)
