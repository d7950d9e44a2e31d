"""``load_exp(EXP_DIR, opts)``: an exp folder's cfg and model, for tools (complexity, benchmarks, demo, export).

Every exp has a ``config.py`` and a ``network.py`` with the same module names, so importing two exps with
a plain ``import config`` would hand the second the first one's cached module. Here each file is executed
under a unique module name derived from its folder; while ``network.py`` runs, ``sys.modules['config']``
temporarily points at this exp's config (for network files that do ``from config import cfg``) and the
exp folder is on ``sys.path``; both are restored afterwards.
"""
import hashlib
import importlib.util
import os.path as osp
import sys

from .config import freeze, merge_from_list

__all__ = ['load_exp', 'import_exp_module']


def import_exp_module(exp_dir, name, aliases=None):
    """Execute ``exp_dir/name.py`` as module ``_cvpack_exp_<hash>_<name>`` and return it.

    Args:
        aliases: {module name: module} installed in ``sys.modules`` only while the file executes.
    """
    exp_dir = osp.realpath(exp_dir)
    path = osp.join(exp_dir, name + '.py')
    if not osp.isfile(path):
        raise FileNotFoundError('%s: the exp folder has no %s.py' % (exp_dir, name))
    tag = hashlib.sha1(exp_dir.encode()).hexdigest()[:12]
    mod_name = '_cvpack_exp_%s_%s' % (tag, name)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    saved = {k: sys.modules.get(k) for k in (aliases or {})}
    sys.modules.update(aliases or {})
    sys.modules[mod_name] = module
    sys.path.insert(0, exp_dir)
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(mod_name, None)
        raise
    finally:
        sys.path.remove(exp_dir)
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def load_exp(exp_dir, opts=None, build=True):
    """Return ``(cfg, model)`` of the exp in ``exp_dir`` (model None when ``build`` is False).

    Args:
        exp_dir: folder holding config.py (defines ``cfg``) and network.py (defines ``build_model(cfg)``).
        opts: ``KEY VALUE`` overrides, as a flat list, applied to a copy of the exp's cfg.

    The cfg is frozen (:mod:`cvpack.config.frozen`): change ``cvpack.config.clone(cfg)`` when a tool needs to.
    """
    import copy
    config = import_exp_module(exp_dir, 'config')
    if not hasattr(config, 'cfg'):
        raise AttributeError('%s/config.py defines no `cfg`' % exp_dir)
    cfg = freeze(merge_from_list(copy.deepcopy(config.cfg), opts or []))
    if not build:
        return cfg, None
    network = import_exp_module(exp_dir, 'network', aliases={'config': config})
    if not hasattr(network, 'build_model'):
        raise AttributeError('%s/network.py defines no `build_model(cfg)`' % exp_dir)
    return cfg, network.build_model(cfg)
