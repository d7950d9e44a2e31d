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


def test_two_urls_with_one_file_name_are_two_downloads(http_root):
    """The cache was keyed by the URL's file name only: the second of https://huggingface.co/A/resolve/main/model.pth
    and .../B/... silently loaded A's weights. A file put into the cache by hand is still used (torch.hub's place)."""
    root, base = http_root
    for sub, value in (('a', 1.0), ('b', 2.0)):
        (root / sub).mkdir()
        torch.save({'w': torch.full((2,), value)}, root / sub / 'model.pth')
    assert torch.equal(safe_load.load_file(base + 'a/model.pth')['w'], torch.full((2,), 1.0))
    assert torch.equal(safe_load.load_file(base + 'b/model.pth')['w'], torch.full((2,), 2.0))
    for sub in ('a', 'b'):   # each read from its own cached copy now
        os.remove(root / sub / 'model.pth')
    assert torch.equal(safe_load.load_file(base + 'a/model.pth')['w'], torch.full((2,), 1.0))
    assert torch.equal(safe_load.load_file(base + 'b/model.pth')['w'], torch.full((2,), 2.0))
    cache = os.path.join(torch.hub.get_dir(), 'checkpoints')
    torch.save({'w': torch.full((2,), 3.0)}, os.path.join(cache, 'by_hand.pth'))
    assert torch.equal(safe_load.load_file(base + 'c/by_hand.pth')['w'], torch.full((2,), 3.0))


def test_a_download_cut_short_is_an_error_and_not_cached(http_root):
    """A connection closed before the Content-Length was reached gave a truncated file that was cached: every
    later load failed ("truncated or corrupt") without a new download. Now it is a download error, nothing is
    cached, and the next try downloads the whole file."""
    import io
    import socket
    import threading
    buf = io.BytesIO()
    torch.save({'w': torch.arange(500.0)}, buf)
    data, served = buf.getvalue(), {'cut': True}

    def serve(sock):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:   # closed at the end of the test
                return
            conn.recv(65536)
            body = data[:len(data) // 2] if served['cut'] else data
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' % len(data) + body)
            conn.close()

    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(4)
    threading.Thread(target=serve, args=(sock,), daemon=True).start()
    url = 'http://127.0.0.1:%d/w.pth' % sock.getsockname()[1]
    try:
        with pytest.raises(safe_load.CheckpointError, match=r'w\.pth: could not be downloaded \(OSError: the '
                           r'connection ended after %d of the %d bytes' % (len(data) // 2, len(data))):
            safe_load.load_file(url)
        assert os.listdir(os.path.join(torch.hub.get_dir(), 'checkpoints')) == []
        served['cut'] = False
        assert torch.equal(safe_load.load_file(url)['w'], torch.arange(500.0))
    finally:
        sock.close()
