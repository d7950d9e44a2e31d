"""python -m cvpack.tools.convert on bad input: --out is checked before any conversion, a file that is no checkpoint
(numpy .npz / .npy, HDF5, text) is named with the supported formats; usage errors are one line, exit 2."""
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from cvpack.safe_load import CheckpointError
from cvpack.tools import convert as convert_cli

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EXP = osp.join(REPO, 'projects', 'RSN', 'exps', 'RSN18.coco')
SUPPORTED = 'supported: PyTorch .pth / .pt / .pth.tar (torch.save, zip or legacy pickle), pickle of arrays .pkl'


def _no_convert(*args, **kwargs):
    raise AssertionError('convert() ran: the argument checks must come first')


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('python -m cvpack.tools.convert: error: '), err
    return err


def _npz(path):
    np.savez(path, weight=np.zeros(3, np.float32))
    return str(path)


@pytest.mark.parametrize('name, content, what', [
    ('w.npz', None, 'a numpy .npz archive'),
    ('w.npy', np.lib.format.MAGIC_PREFIX + b'\x01\x00rest', 'a numpy .npy array'),
    ('w.h5', b'\x89HDF\r\n\x1a\n' + bytes(40), 'an HDF5 file'),
    ('w.pth', b'{"model": 1}', 'a JSON or text file'),
    ('w.pth', b'', 'empty'),
])
def test_non_checkpoint_input_names_the_supported_formats(tmp_path, monkeypatch, capsys, name, content, what):
    monkeypatch.setattr(convert_cli, 'convert', _no_convert)
    src = tmp_path / name
    _npz(src) if content is None else src.write_bytes(content)
    assert convert_cli.main([str(src), '--exp', EXP, '--out', str(tmp_path / 'o.pth')]) == 2
    err = _one_error_line(capsys)
    assert '%s: not a supported checkpoint format: the file is %s' % (src, what) in err and SUPPORTED in err
    assert not (tmp_path / 'o.pth').exists()


def test_checkpoint_files_pass_the_check(tmp_path):
    state = {'model': {'w': torch.ones(2)}}
    torch.save(state, tmp_path / 'zip.pth')
    torch.save(state, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    with open(tmp_path / 'd2.pkl', 'wb') as f:
        pickle.dump({'model': {'w': np.ones(2)}}, f, protocol=0)       # any protocol for a .pkl
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'zip.pth').read_bytes()[:100])   # the loader says 'truncated'
    for name in ('zip.pth', 'legacy.pth', 'd2.pkl', 'cut.pth'):
        assert convert_cli.check_checkpoint_file(str(tmp_path / name)) is None
    with open(tmp_path / 'zip_of_npy.zip', 'wb') as f:   # (a file object: savez adds .npz to a name)
        np.savez(f, a=np.ones(1))
    with pytest.raises(CheckpointError, match='zip_of_npy.zip: not a supported checkpoint format: the file is a '
                                              'numpy .npz archive'):
        convert_cli.check_checkpoint_file(str(tmp_path / 'zip_of_npy.zip'))


@pytest.mark.parametrize('out, message', [
    ('TMP', '--out TMP: is a folder, give a file name'),
    ('TMP/w.pth/o.pth', '--out TMP/w.pth/o.pth: TMP/w.pth is a file, not a folder'),
])
def test_out_is_checked_before_converting(tmp_path, monkeypatch, capsys, out, message):
    monkeypatch.setattr(convert_cli, 'convert', _no_convert)
    src = tmp_path / 'w.pth'
    torch.save({'model': {'w': torch.ones(2)}}, src)
    assert convert_cli.main([str(src), '--exp', EXP, '--out', out.replace('TMP', str(tmp_path))]) == 2
    assert message.replace('TMP', str(tmp_path)) in _one_error_line(capsys)


def test_out_in_a_folder_still_to_be_made(tmp_path, monkeypatch):
    """--out in a folder that does not exist yet: converted into it (it was refused as 'folder does not exist';
    save_converted makes it, as it always did). Nothing is made before the conversion."""
    seen = []
    monkeypatch.setattr(convert_cli, 'convert', lambda src, exp, out, *a: seen.append(out))
    src = tmp_path / 'w.pth'
    torch.save({'model': {'w': torch.ones(2)}}, src)
    out = tmp_path / 'new' / 'sub' / 'o.pth'
    assert convert_cli.main([str(src), '--exp', EXP, '--out', str(out)]) == 0
    assert seen == [str(out)] and not (tmp_path / 'new').exists()


def test_usage_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        convert_cli.main([str(tmp_path / 'w.pth'), '--out', str(tmp_path / 'o.pth')])
    assert exc.value.code == 2
    assert 'the following arguments are required: --exp' in _one_error_line(capsys)
    assert convert_cli.main([str(tmp_path / 'nothere.pth'), '--exp', EXP, '--out', str(tmp_path / 'o.pth')]) == 2
    assert 'source weights not found: %s' % (tmp_path / 'nothere.pth') in _one_error_line(capsys)


@pytest.mark.parametrize('opts, message', [
    (['SOLVER.MAX_ITER', '2.5'], 'config key SOLVER.MAX_ITER: 2.5 is not an integer'),
    (['SOLVER.MAX_ITER'], 'config key SOLVER.MAX_ITER has no value (overrides come in KEY VALUE pairs'),
])
def test_bad_config_overrides_are_one_line(tmp_path, capsys, opts, message):
    """A bad KEY VALUE override (a ConfigError) or a KEY without its VALUE (a ValueError) ended the convert CLI in a
    traceback; now exit 2 with one line naming the key, and nothing written."""
    src = tmp_path / 'w.pth'
    torch.save({'w': torch.zeros(1)}, str(src))
    assert convert_cli.main([str(src), '--exp', EXP, '--out', str(tmp_path / 'o.pth')] + opts) == 2
    assert message in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['w.pth']
