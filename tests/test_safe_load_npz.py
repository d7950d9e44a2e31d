"""A numpy .npz archive given as weights (train.py --weights, test.py --checkpoint, MODEL.WEIGHT, the API) is
named as one, not reported with torch's zip-reader internals."""
import numpy as np
import pytest

from cvpack.safe_load import CheckpointError, load_file


def test_npz_is_named_not_a_weight_file(tmp_path):
    path = tmp_path / 'weights.npz'
    np.savez(path, conv=np.zeros((2, 3)))
    with pytest.raises(CheckpointError) as e:
        load_file(str(path))
    msg = str(e.value)
    assert str(path) in msg and 'numpy .npz archive' in msg and 'not a PyTorch weight file' in msg, msg
    assert 'enforce fail' not in msg and 'inline_container' not in msg, msg
