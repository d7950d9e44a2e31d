"""Freezing a resolved config: after the command-line overrides nothing may change it by accident.

:func:`freeze` turns every (nested) node of a config, in place, into a :class:`FrozenConfig`, which reads like
the EasyDict it was (``cfg.SOLVER.BASE_LR``, ``cfg['SOLVER']``, ``.get``, iteration, ``json.dump``) but refuses
every write with :class:`FrozenConfigError` naming the full key (``config is frozen: SOLVER.BASE_LR``), as
detectron2's ``CfgNode.freeze()``. Lists become :class:`FrozenList`: still ``list`` instances (they compare equal to
lists, ``json.dump`` writes them as arrays, numpy reads them), but ``append``, item assignment and every other
in-place change raise the same error naming the key (``config is frozen: INPUT.MEANS[0]``).

A mutable copy is always one call away: :func:`clone` (the same as ``copy.deepcopy``) returns a deep copy made of
plain EasyDicts, which the caller may change and :func:`freeze` again. The engine freezes in
:func:`cvpack.engine.utils.resolve_cfg` (train.py / test.py) and :func:`cvpack.exp.load_exp` (the tools).
"""
import copy

from easydict import EasyDict as edict

__all__ = ['FrozenConfig', 'FrozenConfigError', 'FrozenList', 'freeze', 'clone', 'is_frozen']


class FrozenConfigError(AttributeError):
    """A write to a frozen config; the message names the full key. Work on ``clone(cfg)`` instead."""


class FrozenConfig(edict):
    """A read-only config node. Made only by :func:`freeze` (its class is swapped in; ``__init__`` never runs)."""

    def _refuse(self, name=None, *_):
        path = vars(self).get('_frozen_path', '')
        key = '.'.join(str(p) for p in (path, name) if p not in ('', None)) or '(the whole config)'
        raise FrozenConfigError('config is frozen: %s (change a copy: cvpack.config.clone(cfg))' % key)

    __setattr__ = __setitem__ = __delattr__ = __delitem__ = _refuse

    def __getattr__(self, name):   # only called for a name that is not there: say which key is missing
        path = vars(self).get('_frozen_path', '')
        if name.startswith('__') or name == '_frozen_path':
            raise AttributeError(name)
        raise AttributeError('config has no key %s (keys get their defaults in cvpack/config/ presets or the '
                             'project\'s config)' % ('%s.%s' % (path, name) if path else name))

    def update(self, *args, **kwargs):
        self._refuse(next(iter(dict(*args, **kwargs)), None))

    def pop(self, key, *default):
        self._refuse(key)

    def _refuse_node(self, *args):
        self._refuse()

    popitem = clear = __ior__ = _refuse_node

    def setdefault(self, key, default=None):
        if key in self:
            return self[key]
        self._refuse(key)

    def __deepcopy__(self, memo):
        return edict({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def __copy__(self):
        return edict(self)

    def __reduce_ex__(self, protocol):   # pickling keeps it frozen
        return freeze, (clone(self), vars(self).get('_frozen_path', ''))


class FrozenList(list):
    """A read-only list of a frozen config (a ``list`` subclass, so ``==`` with lists, json and numpy still work).
    Copies (``copy.copy``, ``copy.deepcopy``, :func:`clone`, ``list(x)``, ``x + y``) are plain, mutable lists."""

    __slots__ = ('_frozen_path',)

    def _refuse_item(self, index=None, *_):
        """Item writes name the item (``INPUT.MEANS[0]``; a slice names the list)."""
        self._refuse(index if isinstance(index, int) else None)

    def _refuse(self, index=None, *_, **__):
        path = self._frozen_path if index is None else '%s[%d]' % (self._frozen_path, index)
        raise FrozenConfigError('config is frozen: %s (a list; change a copy: cvpack.config.clone(cfg))' % path)

    def _refuse_list(self, *_, **__):
        self._refuse()

    __setitem__ = __delitem__ = pop = _refuse_item
    __iadd__ = __imul__ = append = extend = insert = remove = clear = sort = reverse = _refuse_list

    def __copy__(self):
        return list(self)

    def __deepcopy__(self, memo):
        return [copy.deepcopy(v, memo) for v in self]

    def __reduce_ex__(self, protocol):   # pickling keeps it frozen (DataLoader workers started by spawn)
        return _frozen_list, (list(self), self._frozen_path)


def _frozen_list(items, path):
    out = FrozenList(_freeze_value(v, '%s[%d]' % (path, i)) for i, v in enumerate(items))
    out._frozen_path = path
    return out


def _freeze_value(value, path):
    if isinstance(value, dict):
        return freeze(value, path)
    if isinstance(value, FrozenList):
        return value
    if isinstance(value, list):
        return _frozen_list(value, path)
    if type(value) is tuple and any(isinstance(v, (dict, list)) for v in value):
        return tuple(_freeze_value(v, '%s[%d]' % (path, i)) for i, v in enumerate(value))
    return value


def freeze(cfg, _path=''):
    """Make ``cfg`` (an EasyDict or dict tree) read-only in place, every nested node included; returns it.

    A plain ``dict`` node becomes a frozen EasyDict (the parent then holds that new object)."""
    if not isinstance(cfg, edict):
        cfg = edict(cfg)
    for key, value in list(cfg.items()):
        frozen = _freeze_value(value, '%s.%s' % (_path, key) if _path else str(key))
        if frozen is not value:
            dict.__setitem__(cfg, key, frozen)
            object.__setattr__(cfg, key, frozen)
    object.__setattr__(cfg, '_frozen_path', _path)
    object.__setattr__(cfg, '__class__', FrozenConfig)   # (EasyDict's setattr would also add an item)
    return cfg


def clone(cfg):
    """A mutable deep copy of ``cfg`` (frozen or not): plain EasyDicts, free to change and :func:`freeze` again."""
    return copy.deepcopy(cfg)


def is_frozen(cfg):
    return isinstance(cfg, FrozenConfig)
