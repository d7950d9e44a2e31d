"""cvpack.safe_load: weight files from paths and URLs (served from 127.0.0.1 here) never run code."""
import os
import pickle

import numpy as np
import pytest
import torch

from cvpack import safe_load
from cvpack.modeling.pretrained import load_state_dict


def test_torch_file_with_code_is_refused_from_path_and_url(tmp_path, evil, http_root):
    root, base = http_root
    torch.save({'model': {'w': torch.ones(2)}, 'x': evil}, root / 'evil.pth')
    for source in (str(root / 'evil.pth'), base + 'evil.pth'):
        with pytest.raises(safe_load.UnsafeFileError, match=r'evil\.pth.*posix\.system'):
            load_state_dict(source)
    assert not os.path.exists(evil.marker)


def test_pickle_with_code_is_refused_and_arrays_load(tmp_path, evil, http_root):
    root, base = http_root
    with open(root / 'evil.pkl', 'wb') as f:
        pickle.dump({'model': {'w': np.ones(2)}, 'x': evil}, f)
    with open(root / 'good.pkl', 'wb') as f:
        pickle.dump({'model': {'w': np.arange(6, dtype=np.float32).reshape(2, 3)}, '__author__': 'me'}, f, protocol=2)
    for source in (str(root / 'evil.pkl'), base + 'evil.pkl'):
        with pytest.raises(safe_load.UnsafeFileError, match=r'evil\.pkl.*posix\.system'):
            safe_load.load_file(source)
    assert not os.path.exists(evil.marker)
    obj = safe_load.load_file(base + 'good.pkl')
    np.testing.assert_array_equal(obj['model']['w'], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert obj['__author__'] == 'me'


def test_bad_files_name_the_file(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.ones(3)}, good)
    data = good.read_bytes()
    (tmp_path / 'trunc.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'empty.pth').write_bytes(b'')
    (tmp_path / 'text.pth').write_text('not weights')
    os.symlink(tmp_path / 'gone.pth', tmp_path / 'dangling.pth')
    with pytest.raises(safe_load.CheckpointError, match=r'trunc\.pth: truncated or corrupt'):
        safe_load.load_file(tmp_path / 'trunc.pth')
    with pytest.raises(safe_load.CheckpointError, match=r'empty\.pth: is empty'):
        safe_load.load_file(tmp_path / 'empty.pth')
    with pytest.raises(safe_load.CheckpointError, match=r'text\.pth: not a PyTorch weight file'):
        safe_load.load_file(tmp_path / 'text.pth')
    with pytest.raises(FileNotFoundError, match=r'dangling\.pth \(a dangling link'):
        safe_load.load_file(tmp_path / 'dangling.pth')
    with pytest.raises(safe_load.CheckpointError, match='is a directory'):
        safe_load.load_file(tmp_path)
    assert torch.equal(safe_load.load_file(good)['w'], torch.ones(3))


def test_numpy_and_foreign_metadata_are_data_only(tmp_path):
    """Numpy arrays are admitted; a listed metadata class loads as an Inert placeholder and is never imported."""
    import sys
    import types
    names = ('mmengine', 'mmengine.logging', 'mmengine.logging.history_buffer')
    assert not any(n in sys.modules for n in names)
    mod = types.ModuleType(names[-1])
    HistoryBuffer = type('HistoryBuffer', (), {'__module__': names[-1]})
    mod.HistoryBuffer = HistoryBuffer
    buf = HistoryBuffer()
    buf.values = [1.0, 2.0]
    sys.modules.update({n: types.ModuleType(n) for n in names[:-1]})
    sys.modules[names[-1]] = mod
    try:
        torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'a': np.ones(2)},
                    'message_hub': {'loss': buf}}, tmp_path / 'mm.pth')
    finally:
        for n in names:
            del sys.modules[n]
    obj = safe_load.load_file(tmp_path / 'mm.pth')
    assert isinstance(obj['message_hub']['loss'], safe_load.Inert)
    assert obj['message_hub']['loss'].state == {'values': [1.0, 2.0]}
    np.testing.assert_array_equal(obj['meta']['a'], np.ones(2))
    assert not any(n in sys.modules for n in names)
