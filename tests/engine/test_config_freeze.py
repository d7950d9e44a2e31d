"""The resolved config is frozen: writes raise naming the full key; clone() gives a mutable copy."""
import copy
import json
import pickle

import pytest

from cvpack.config import FrozenConfigError, clone, freeze, is_frozen, to_plain
from cvpack.config.megvii import megvii_config
from cvpack.engine.utils import resolve_cfg


@pytest.fixture
def cfg(tmp_path):
    return megvii_config(str(tmp_path / 'exp'))


@pytest.mark.parametrize('write, key', [
    (lambda c: setattr(c.SOLVER, 'BASE_LR', 1e-3), 'SOLVER.BASE_LR'),
    (lambda c: c['TEST'].__setitem__('FLIP', False), 'TEST.FLIP'),
    (lambda c: setattr(c.DATASET.KEYPOINT, 'NUM', 3), 'DATASET.KEYPOINT.NUM'),
    (lambda c: setattr(c, 'SEED', 1), 'SEED'),
    (lambda c: setattr(c.MODEL, 'NEW_KEY', 1), 'MODEL.NEW_KEY'),
    (lambda c: delattr(c.SOLVER, 'AMP'), 'SOLVER.AMP'),
    (lambda c: c.LOSS.pop('OHKM'), 'LOSS.OHKM'),
    (lambda c: c.LOSS.clear(), 'LOSS'),
    (lambda c: c.clear(), '(the whole config)'),
    (lambda c: c.TEST.update(FLIP=False), 'TEST.FLIP'),
    (lambda c: c.INPUT.setdefault('NEW', 1), 'INPUT.NEW'),
    (lambda c: c.DATASET.COMBINE[0].__setitem__('WEIGHT', 2.0), 'DATASET.COMBINE[0].WEIGHT'),
])
def test_writes_raise_naming_the_key(cfg, write, key):
    cfg.DATASET.COMBINE = [{'NAME': 'MPII', 'WEIGHT': 1.0}]   # a dict inside a list is frozen too
    frozen = freeze(copy.deepcopy(cfg))
    with pytest.raises(FrozenConfigError, match=r'^config is frozen: %s ' % key.replace('.', r'\.')
                       .replace('[', r'\[').replace(']', r'\]').replace('(', r'\(').replace(')', r'\)')):
        write(frozen)
    assert to_plain(frozen) == to_plain(cfg)             # nothing changed, reads work as before
    assert frozen.SOLVER.BASE_LR == 5e-4 and frozen['TEST']['FLIP'] is True and frozen.get('NOPE', 7) == 7
    assert frozen.INPUT.setdefault('NORMALIZE') is True  # setdefault of an existing key only reads


def test_a_missing_key_is_named_in_full(cfg):
    frozen = freeze(cfg)
    with pytest.raises(AttributeError, match=r'^config has no key DATASET\.KEYPOINT\.NOPE '):
        _ = frozen.DATASET.KEYPOINT.NOPE
    assert not hasattr(frozen.MODEL, 'NOPE') and hasattr(frozen.MODEL, 'CHANNELS_LAST')


def test_clone_is_mutable_and_independent(cfg):
    frozen = freeze(cfg)
    copy_ = clone(frozen)
    assert not is_frozen(copy_) and not is_frozen(copy_.SOLVER) and not is_frozen(copy_.DATASET.KEYPOINT)
    copy_.SOLVER.BASE_LR = 1e-3
    copy_.DATASET.KEYPOINT.FLIP_PAIRS.append([0, 0])
    assert frozen.SOLVER.BASE_LR == 5e-4 and [0, 0] not in frozen.DATASET.KEYPOINT.FLIP_PAIRS
    again = freeze(copy_)
    with pytest.raises(FrozenConfigError, match='SOLVER.BASE_LR'):
        again.SOLVER.BASE_LR = 1.0
    assert again.SOLVER.BASE_LR == 1e-3


def test_pickle_and_json_keep_the_content(cfg):
    frozen = freeze(copy.deepcopy(cfg))
    back = pickle.loads(pickle.dumps(frozen))     # DataLoader workers started by spawn get a frozen config
    assert is_frozen(back.SOLVER) and to_plain(back) == to_plain(cfg)
    with pytest.raises(FrozenConfigError, match='TEST.FLIP'):
        back.TEST.FLIP = False
    assert json.loads(json.dumps(frozen)) == json.loads(json.dumps(to_plain(cfg)))


def test_resolution_freezes_after_the_overrides(cfg):
    resolved = resolve_cfg(cfg, ['SOLVER.BASE_LR', '1e-3', 'OUTPUT_DIR', '/tmp/elsewhere'])
    assert resolved.SOLVER.BASE_LR == 1e-3 and resolved.TEST_DIR == '/tmp/elsewhere/test_dir'
    with pytest.raises(FrozenConfigError, match=r'config is frozen: SOLVER\.BASE_LR'):
        resolved.SOLVER.BASE_LR = 5e-4
    assert not is_frozen(cfg) and cfg.SOLVER.BASE_LR == 5e-4   # the exp's own cfg is untouched
    cfg.SOLVER.BASE_LR = 2e-3                                   # and stays editable


def test_load_exp_and_weight_overrides_give_frozen_configs(repo_root):
    from cvpack.exp import load_exp
    from cvpack.weights import apply_overrides
    cfg, _ = load_exp(repo_root + '/projects/RSN/exps/Res18.coco', ['MODEL.CONV_BIAS', 'True'], build=False)
    with pytest.raises(FrozenConfigError, match='MODEL.CONV_BIAS'):
        cfg.MODEL.CONV_BIAS = False
    out = apply_overrides(cfg, {'MODEL.CONV_BIAS': False})
    assert is_frozen(out) and out.MODEL.CONV_BIAS is False and cfg.MODEL.CONV_BIAS is True
    assert not is_frozen(apply_overrides(clone(cfg), {'MODEL.CONV_BIAS': False}))


@pytest.mark.parametrize('write, key', [
    (lambda c: c.INPUT.MEANS.append(0.5), 'INPUT.MEANS'),
    (lambda c: c.INPUT.MEANS.__setitem__(0, 0.5), r'INPUT.MEANS\[0\]'),
    (lambda c: c.INPUT.STDS.extend([1.0]), 'INPUT.STDS'),
    (lambda c: c.DATASET.KEYPOINT.FLIP_PAIRS[1].reverse(), r'DATASET.KEYPOINT.FLIP_PAIRS\[1\]'),
    (lambda c: c.DATASET.KEYPOINT.UPPER_BODY_IDS.pop(), 'DATASET.KEYPOINT.UPPER_BODY_IDS'),
    (lambda c: c.TEST.SHIFT_RATIOS.__delitem__(0), r'TEST.SHIFT_RATIOS\[0\]'),
    (lambda c: c.DATASET.TRAIN.GAUSSIAN_KERNELS.sort(), 'DATASET.TRAIN.GAUSSIAN_KERNELS'),
    (lambda c: c.INPUT_SHAPE.__iadd__([3]), 'INPUT_SHAPE'),
])
def test_frozen_lists_are_read_only(cfg, write, key):
    frozen = freeze(copy.deepcopy(cfg))
    with pytest.raises(FrozenConfigError, match=r'^config is frozen: %s \(a list' % key.replace('.', r'\.')):
        write(frozen)
    assert to_plain(frozen) == to_plain(cfg)                 # nothing changed
    assert frozen.INPUT.MEANS == [0.406, 0.456, 0.485] and frozen.INPUT_SHAPE == [256, 192]
    copied = clone(frozen)                                   # a clone's lists are plain and mutable
    copied.INPUT.MEANS.append(0.5)
    copied.DATASET.KEYPOINT.FLIP_PAIRS[1].reverse()
    assert type(copied.INPUT.MEANS) is list and copied.INPUT.MEANS[-1] == 0.5 and len(frozen.INPUT.MEANS) == 3
    back = pickle.loads(pickle.dumps(frozen))                # spawned workers get read-only lists too
    with pytest.raises(FrozenConfigError, match='INPUT.MEANS'):
        back.INPUT.MEANS.append(1.0)
    assert json.loads(json.dumps(frozen))['INPUT']['MEANS'] == [0.406, 0.456, 0.485]
