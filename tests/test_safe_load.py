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


def test_cut_or_damaged_files_of_every_format_name_the_file(tmp_path):
    """A cut legacy-format torch file (torch < 1.6, e.g. the authors' 2020 checkpoints) raised IndexError /
    struct.error without a file name, or, cut after its first pickle, "loaded" as torch's magic number (an int,
    read as a plain pickle); a zip whose end record is damaged raised zipfile's BadZipFile; a pickle whose
    opcodes do not fit raised AttributeError. Each is now a CheckpointError naming the file."""
    import io
    import struct
    buf = io.BytesIO()
    torch.save({'w': torch.arange(3.0)}, buf, _use_new_zipfile_serialization=False)
    legacy = buf.getvalue()
    for cut in (15, 200, 300, len(legacy) - 1):
        (tmp_path / 'legacy.pth').write_bytes(legacy[:cut])
        with pytest.raises(safe_load.CheckpointError, match=r'legacy\.pth: .*(truncated|unexpected EOF)'):
            safe_load.load_file(tmp_path / 'legacy.pth')
    (tmp_path / 'legacy.pth').write_bytes(legacy)
    assert torch.equal(safe_load.load_file(tmp_path / 'legacy.pth')['w'], torch.arange(3.0))
    buf = io.BytesIO()
    torch.save({'w': torch.ones(3)}, buf)
    data = buf.getvalue()   # a zip64 locator saying "disk 1 of 2" just before the end record (22 bytes):
    damaged = data[:-42] + struct.pack('<4sLQL', b'PK\x06\x07', 1, 0, 2) + data[-22:]   # zipfile raises on it
    (tmp_path / 'disks.pth').write_bytes(damaged)
    assert torch.equal(safe_load.load_file(tmp_path / 'disks.pth')['w'], torch.ones(3))   # torch's reader copes
    (tmp_path / 'disks_cut.pth').write_bytes(damaged[:200] + damaged[-42:])
    with pytest.raises(safe_load.CheckpointError, match=r'disks_cut\.pth: truncated or corrupt'):
        safe_load.load_file(tmp_path / 'disks_cut.pth')
    (tmp_path / 'append.pkl').write_bytes(b'\x80\x02}K\x01a.')   # APPEND onto a dict
    with pytest.raises(safe_load.CheckpointError, match=r'append\.pkl: truncated or corrupt pickle \(AttributeError'):
        safe_load.load_file(tmp_path / 'append.pkl')
