"""cvpack.weights.match_state: the one state-dict check of every loader (test.py, fine-tuning, resume, convert, API)."""
import pytest
import torch

from cvpack.engine import checkpoint as ck
from cvpack.engine.tester import load_for_test
from cvpack.weights import WeightsMismatchError, match_state


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))


def test_one_function_and_one_error_class():
    assert ck.match_state is match_state and ck.ModelMismatchError is WeightsMismatchError


def test_counts_and_messages():
    net = _net()
    state = net.state_dict()
    state.pop('1.num_batches_tracked')   # formats drop the counters: never "missing"
    assert match_state(net, state, 'a.pth') == (list(state), [], [])
    state = dict(state, **{'extra.w': torch.zeros(1)})
    state.pop('1.bias')
    with pytest.raises(WeightsMismatchError, match=r"^a\.pth: does not match the Sequential model \(strict loading; "
                       r"test\.py --non-strict allows it\): 1 model tensors missing from the file: \['1\.bias'\]; "
                       r"1 file tensors unexpected: \['extra\.w'\]$") as err:
        match_state(net, state, 'a.pth')
    assert err.value.missing == ['1.bias'] and err.value.unexpected == ['extra.w'] and err.value.shapes == []
    loaded, missing, unexpected = match_state(net, state, 'a.pth', strict=False)
    assert len(loaded) == 5 and missing == ['1.bias'] and unexpected == ['extra.w']
    # a shape mismatch is an error also without strict, and a strict error lists it with the missing keys
    state['0.bias'] = torch.zeros(5)
    for strict, tail in ((False, r'$'), (True, r"; 1 model tensors missing from the file: \['1\.bias'\]; ")):
        with pytest.raises(WeightsMismatchError, match=r"a\.pth: does not fit the Sequential model \(another exp's "
                           r"network\?\): 1 shape mismatches: 0\.bias: file \(5,\) vs model \(4,\)" + tail):
            match_state(net, state, 'a.pth', strict=strict)
    with pytest.raises(WeightsMismatchError, match=r"b\.pth: entries that are not tensors: step"):
        match_state(net, {'step': 3}, 'b.pth', strict=False)


def test_a_file_fitting_nothing_is_an_error_also_non_strict(tmp_path):
    """test.py --non-strict (load_for_test -> build_model_with_weights) with another network's file (the format
    drops its BN counter: 1 tensor left)."""
    from easydict import EasyDict as edict
    torch.save({'model': {'other.weight': torch.ones(1), '1.num_batches_tracked': torch.tensor(0)}},
               str(tmp_path / 'other.pth'))
    with pytest.raises(WeightsMismatchError, match=r"other\.pth: none of its 1 tensors belongs to the Sequential "
                       r"model \(another network\?\): file keys other\.weight; model keys "
                       r"0\.weight, 0\.bias, 1\.weight, 1\.bias, 1\.running_mean, \.\.\. \(\+2 more\)"):
        load_for_test(edict(MODEL=edict(WEIGHT_FORMATS={})), lambda cfg: _net(), str(tmp_path / 'other.pth'),
                      strict=False)
    torch.save({'model': _net().state_dict()}, str(tmp_path / 'ok.pth'))
    cfg, model = load_for_test(edict(MODEL=edict(WEIGHT_FORMATS={})), lambda cfg: _net(), str(tmp_path / 'ok.pth'))
    assert not model.training and torch.equal(model.state_dict()['0.weight'], torch.load(
        str(tmp_path / 'ok.pth'), weights_only=True)['model']['0.weight'])
