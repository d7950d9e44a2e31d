"""Checkpoint files: atomic writes, the iter-last link, weights_only loading, original-format weights."""
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch

from cvpack.engine import checkpoint as ck


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_atomic_write_keeps_previous_last(tmp_path, monkeypatch):
    net = _net()
    first = ck.save_checkpoint({'model': net.state_dict(), 'iteration': 1}, str(tmp_path / 'iter-1.pth'))
    ck.link_last(first)
    real_save = torch.save

    def broken_save(obj, f, *a, **k):  # half a file, then the process "dies"
        fh = f if hasattr(f, 'write') else open(f, 'wb')
        fh.write(b'PK\x03\x04 truncated')
        fh.flush()
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        ck.save_checkpoint({'model': net.state_dict(), 'iteration': 2}, str(tmp_path / 'iter-1.pth'))
    monkeypatch.setattr(torch, 'save', real_save)
    monkeypatch.setattr(os, 'replace', lambda *a: (_ for _ in ()).throw(OSError('interrupted')))
    with pytest.raises(OSError, match='interrupted'):
        ck.save_checkpoint({'model': net.state_dict(), 'iteration': 3}, str(tmp_path / 'iter-1.pth'))
    monkeypatch.undo()
    state = ck.load_checkpoint(str(tmp_path / ck.LAST_NAME))
    assert state['iteration'] == 1
    assert sorted(os.listdir(tmp_path)) == ['iter-1.pth', 'iter-last.pth']   # no temporary files left


def test_link_last_symlink_and_copy_fallback(tmp_path, monkeypatch):
    a = ck.save_checkpoint({'iteration': 1}, str(tmp_path / 'iter-1.pth'))
    b = ck.save_checkpoint({'iteration': 2}, str(tmp_path / 'iter-2.pth'))
    last = ck.link_last(a)
    assert osp.islink(last) and os.readlink(last) == 'iter-1.pth'     # relative: the folder can move
    ck.link_last(b)
    assert ck.load_checkpoint(last)['iteration'] == 2

    def no_links(*a, **k):
        raise OSError('symlinks not supported')

    monkeypatch.setattr(os, 'symlink', no_links)
    ck.link_last(a)
    assert not osp.islink(last) and ck.load_checkpoint(last)['iteration'] == 1


def test_rng_state_round_trip_is_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ck.rng_state()
    path = ck.save_checkpoint({'rng': state}, str(tmp_path / 'r.pth'))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = torch.load(path, weights_only=True)       # raises on any pickled Python object
    ck.set_rng_state(loaded['rng'])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(FileNotFoundError, match='iter-9.pth'):
        ck.load_checkpoint(str(tmp_path / 'iter-9.pth'))


def test_original_format_with_module_prefix(tmp_path):
    src, dst = _net(), _net()
    torch.nn.init.constant_(src[0].weight, 0.25)
    original = {'model': {'module.' + k: v for k, v in src.state_dict().items()},
                'optimizer': {}, 'scheduler': {}, 'iteration': 2400}
    torch.save(original, str(tmp_path / 'orig.pth'))
    missing, unexpected = ck.load_model_weights(dst, str(tmp_path / 'orig.pth'))
    assert missing == [] and unexpected == []
    assert torch.equal(dst[0].weight, src[0].weight)
    torch.save(src.state_dict(), str(tmp_path / 'bare.pth'))          # a bare state dict works too
    ck.load_model_weights(_net(), str(tmp_path / 'bare.pth'))


def test_strict_load_names_missing_and_unexpected(tmp_path):
    sd = _net().state_dict()
    sd.pop('1.weight')
    sd['extra.w'] = torch.zeros(1)
    torch.save({'model': sd}, str(tmp_path / 'bad.pth'))
    with pytest.raises(ck.ModelMismatchError, match=r"bad.pth: .*1 model tensors missing from the file: "
                       r"\['1.weight'\]; 1 file tensors unexpected: \['extra.w'\]"):
        ck.load_model_weights(_net(), str(tmp_path / 'bad.pth'))
    missing, unexpected = ck.load_model_weights(_net(), str(tmp_path / 'bad.pth'), strict=False)
    assert missing == ['1.weight'] and unexpected == ['extra.w']


def test_test_checkpoint_order(tmp_path, caplog):
    """--checkpoint > -i > iter-last.pth (when present) > MODEL.WEIGHT; the choice is logged."""
    import logging
    from easydict import EasyDict
    from cvpack.engine.tester import resolve_test_checkpoint
    out = tmp_path / 'out'
    out.mkdir()
    weight = tmp_path / 'start.pth'
    for p in (weight, out / 'iter-4.pth', tmp_path / 'other.pth'):
        torch.save({}, str(p))
    cfg = EasyDict(OUTPUT_DIR=str(out), MODEL=EasyDict(WEIGHT=str(weight)))
    assert resolve_test_checkpoint(cfg) == str(weight)           # no iter-last yet: the starting weights
    ck.link_last(str(out / 'iter-4.pth'))
    log = logging.getLogger('test_ckpt_order')
    with caplog.at_level(logging.INFO, logger='test_ckpt_order'):
        assert resolve_test_checkpoint(cfg, log=log) == str(out / ck.LAST_NAME)   # fine-tuned, not the start
    assert 'iter-last.pth' in caplog.text
    assert resolve_test_checkpoint(cfg, iteration=4) == str(out / 'iter-4.pth')
    assert resolve_test_checkpoint(cfg, 4, str(tmp_path / 'other.pth')) == str(tmp_path / 'other.pth')
    cfg.MODEL.WEIGHT = None
    os.remove(str(out / ck.LAST_NAME))
    with pytest.raises(FileNotFoundError, match='iter-last.pth.*iter-4.pth'):
        resolve_test_checkpoint(cfg)


def test_weights_needing_a_key_the_exp_lacks(tmp_path):
    """A converted checkpoint whose config overrides name a key the exp does not have: an error naming the file
    and the key (it used to be reported as a setting to add on the command line, which no override can add)."""
    from easydict import EasyDict
    model = torch.nn.Linear(2, 1)
    path = str(tmp_path / 'converted.pth')
    torch.save({'model': model.state_dict(), 'cfg_overrides': {'MODEL.CONV_BIAS': False, 'MODEL.NOPE': 1},
                'source': {'file': 'x', 'format': 'mmpose'}}, path)
    cfg = EasyDict(MODEL=EasyDict(CONV_BIAS=False, WEIGHT_FORMATS={}))
    with pytest.raises(KeyError, match=r"converted\.pth: the weights need config key 'MODEL\.NOPE'"):
        ck.load_model_weights(model, path, cfg=cfg)
    cfg.MODEL.NOPE = 1
    assert ck.load_model_weights(model, path, cfg=cfg) == ([], [])
