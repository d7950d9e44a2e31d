"""DATASET.IMAGE_CACHE: decoded images on disk give the same samples bit for bit, and a bad entry never passes."""
import glob
import os
import os.path as osp
import shutil
import warnings

import cv2
import numpy as np
import pytest
import torch

from cvpack.config.base import merge_from_list
from cvpack.config.megvii import megvii_config
from cvpack.config.schema import ConfigError, validate_config
from cvpack.data import build_dataset
from cvpack.data.image_cache import DecodedImageCache
from cvpack.data.io import ImageReadError, read_image


def _entries(root):
    return sorted(glob.glob(osp.join(str(root), '*', '*.npy')))


def _dataset(coco_subset, tmp_path, split, cache):
    cfg = megvii_config(str(tmp_path / 'exp'))
    cfg.DATASET.ROOT = coco_subset
    cfg.TEST.USE_GT_BBOX = True
    cfg.DATASET.IMAGE_CACHE = cache
    ds = build_dataset(cfg, split)
    ds.seed(0)
    return ds


@pytest.mark.parametrize('split', ['train', 'val'])
def test_samples_identical_cold_and_warm(coco_subset, tmp_path, split):
    """Cold (decode + write) and warm (memory-mapped) reads give the very samples of a plain read."""
    cache = tmp_path / 'cache'
    plain = _dataset(coco_subset, tmp_path, split, '')
    cached = _dataset(coco_subset, tmp_path, split, str(cache))
    n = 12
    ref = [plain[i] for i in range(n)]
    images = {plain.records[i]['image_path'] for i in range(n)}
    for rnd in ('cold', 'warm'):
        cached.seed(0)
        for i in range(n):
            got = cached[i]
            for key, value in ref[i].items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(got[key], value), (rnd, i, key)
        assert len(_entries(cache)) == len(images), rnd      # one entry per distinct image, written once
        if rnd == 'cold':
            mtimes = {p: os.stat(p).st_mtime_ns for p in _entries(cache)}
    assert mtimes == {p: os.stat(p).st_mtime_ns for p in _entries(cache)}   # the warm pass wrote nothing


def test_entry_is_the_decoded_image_read_only(coco_subset, tmp_path):
    path = osp.join(coco_subset, 'images/val2017/000000000785.jpg')
    c = DecodedImageCache(str(tmp_path / 'c'))
    for rgb in (False, True):
        first, again = c.read(path, rgb=rgb), c.read(path, rgb=rgb)
        assert np.array_equal(first, read_image(path, rgb=rgb)) and np.array_equal(again, first)
        assert not first.flags.writeable and not again.flags.writeable   # decoded, then memory-mapped
        assert isinstance(again.base, np.memmap) or isinstance(again, np.memmap)
    assert len(_entries(c.root)) == 2                            # BGR and RGB are separate entries


def _same_size_images(tmp_path):
    """Two BMP files of one size and byte count with other pixels (a replaced image the size cannot tell)."""
    a, b = tmp_path / 'a.bmp', tmp_path / 'b.bmp'
    cv2.imwrite(str(a), np.full((6, 5, 3), 10, np.uint8))
    cv2.imwrite(str(b), np.full((6, 5, 3), 200, np.uint8))
    assert a.stat().st_size == b.stat().st_size
    return a, b


def test_replaced_source_with_same_size_and_mtime_gets_a_new_entry(tmp_path):
    a, b = _same_size_images(tmp_path)
    src = tmp_path / 'img.bmp'
    shutil.copy(a, src)
    os.utime(src, ns=(10 ** 18, 10 ** 18))
    c = DecodedImageCache(str(tmp_path / 'c'))
    assert c.read(str(src)).max() == 10
    shutil.copy(b, src)                                           # same name, size and (set back) mtime
    os.utime(src, ns=(10 ** 18, 10 ** 18))
    assert c.read(str(src)).max() == 200
    os.unlink(src)
    os.rename(b, src)                                             # replaced by a rename (another inode)
    os.utime(src, ns=(10 ** 18, 10 ** 18))
    assert c.read(str(src)).max() == 200 and len(_entries(c.root)) == 3


def test_repointed_symlink_gets_the_new_target(tmp_path):
    a, b = _same_size_images(tmp_path)
    for f in (a, b):
        os.utime(f, ns=(10 ** 18, 10 ** 18))
    link = tmp_path / 'link.bmp'
    link.symlink_to(a)
    c = DecodedImageCache(str(tmp_path / 'c'))
    assert c.read(str(link)).max() == 10
    link.unlink()
    link.symlink_to(b)
    assert c.read(str(link)).max() == 200


def test_missing_source_raises_even_with_an_entry(coco_subset, tmp_path):
    src = tmp_path / 'img.jpg'
    shutil.copy(osp.join(coco_subset, 'images/val2017/000000000785.jpg'), src)
    c = DecodedImageCache(str(tmp_path / 'c'))
    c.read(str(src))
    src.unlink()
    with pytest.raises(ImageReadError, match=r'not found.*img\.jpg.*record val #2'):
        c.read(str(src), record='val #2')


def test_stale_temporary_files_are_swept(tmp_path):
    sub = tmp_path / 'c' / 'ab'
    sub.mkdir(parents=True)
    old, fresh, entry = sub / '.tmp-old.npy', sub / '.tmp-fresh.npy', sub / 'ab12.npy'
    for f in (old, fresh, entry):
        f.write_bytes(b'x')
    os.utime(old, (0, 0))
    os.utime(entry, (0, 0))
    DecodedImageCache(str(tmp_path / 'c'))
    assert not old.exists() and fresh.exists() and entry.exists()


def _damage(entry, how, evil):
    if how == 'truncated':
        data = open(entry, 'rb').read()
        open(entry, 'wb').write(data[:len(data) // 2])
    elif how == 'garbage':
        open(entry, 'wb').write(b'not a numpy file at all')
    elif how == 'wrong shape':
        np.save(entry, np.zeros((4, 5), np.float32))
    elif how == 'pickle':
        with open(entry, 'wb') as f:
            np.save(f, np.array([evil], dtype=object), allow_pickle=True)


@pytest.mark.parametrize('how', ['truncated', 'garbage', 'wrong shape', 'pickle'])
def test_damaged_entry_is_decoded_again_and_rewritten(coco_subset, tmp_path, how, evil):
    path = osp.join(coco_subset, 'images/val2017/000000000785.jpg')
    c = DecodedImageCache(str(tmp_path / 'c'))
    truth = c.read(path)
    entry = c.entry_path(path, False)
    _damage(entry, how, evil)
    with pytest.warns(RuntimeWarning, match='damaged entry %s of %s' % (entry, path)):
        img = c.read(path)
    assert np.array_equal(img, truth)
    assert not osp.exists(tmp_path / 'PWNED')                     # the pickled payload never ran
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert np.array_equal(c.read(path), truth)                # rewritten: read back without a warning


def test_entry_that_cannot_be_opened_warns_once_and_reads_the_sources(coco_subset, tmp_path, monkeypatch):
    paths = [osp.join(coco_subset, 'images/val2017', f) for f in ('000000000785.jpg', '000000000802.jpg')]
    c = DecodedImageCache(str(tmp_path / 'c'))
    for p in paths:
        c.read(p)
    before = {p: os.stat(p).st_mtime_ns for p in _entries(c.root)}

    def denied(*a, **k):
        raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(np, 'load', denied)
    with pytest.warns(RuntimeWarning, match='cannot open entry .*Permission denied'):
        assert np.array_equal(c.read(paths[0]), read_image(paths[0]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')                            # once per process, not once per image
        assert np.array_equal(c.read(paths[1]), read_image(paths[1]))
    assert before == {p: os.stat(p).st_mtime_ns for p in _entries(c.root)}   # good entries not rewritten


def test_unwritable_cache_warns_once_and_reads_the_sources(coco_subset, tmp_path, monkeypatch):
    paths = [osp.join(coco_subset, 'images/val2017', f) for f in ('000000000785.jpg', '000000000802.jpg')]
    c = DecodedImageCache(str(tmp_path / 'c'))

    def full(*a, **k):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(np, 'save', full)
    with pytest.warns(RuntimeWarning, match='cannot write .*No space left'):
        assert np.array_equal(c.read(paths[0]), read_image(paths[0]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')                            # no second warning, no second try
        assert np.array_equal(c.read(paths[1]), read_image(paths[1]))
    assert not c.writable and _entries(c.root) == []


def test_bad_sources_and_roots(tmp_path):
    c = DecodedImageCache(str(tmp_path / 'c'))
    with pytest.raises(ImageReadError, match=r'not found.*gone\.jpg.*record train #3'):
        c.read(str(tmp_path / 'gone.jpg'), record='train #3')
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8\xff\xe0 not a jpeg' * 20)
    with pytest.raises(ImageReadError, match=r'cannot decode.*bad\.jpg'):
        c.read(str(bad))
    assert _entries(c.root) == []
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ValueError, match='IMAGE_CACHE .*file exists and is not a folder'):
        DecodedImageCache(str(tmp_path / 'file'))


def test_config_key(tmp_path):
    cfg = merge_from_list(megvii_config(str(tmp_path)), ['DATASET.IMAGE_CACHE', str(tmp_path / 'c')])
    assert cfg.DATASET.IMAGE_CACHE == str(tmp_path / 'c')
    assert merge_from_list(megvii_config(str(tmp_path)), ['DATASET.IMAGE_CACHE', 'None']).DATASET.IMAGE_CACHE is None
    cfg.DATASET.IMAGE_CACHE = 5                                   # e.g. written so in a config.py
    with pytest.raises(ConfigError, match='DATASET.IMAGE_CACHE'):
        validate_config(cfg)


def test_loader_workers_fill_and_read_one_cache(coco_subset, tmp_path):
    """Two DataLoader workers share the folder: the batches equal the uncached loader's, one entry per image."""
    from cvpack.data.samplers import IterationBasedSampler
    cache = tmp_path / 'cache'
    batches = {}
    for name, folder in (('plain', ''), ('cached', str(cache)), ('warm', str(cache))):
        ds = _dataset(coco_subset, tmp_path, 'train', folder)
        sampler = IterationBasedSampler(len(ds), batch_size=4, num_iters=3, rank=0, world_size=1, seed=5)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=2)
        batches[name] = [b['image'] for b in loader]
    used = {ds.records[int(i)]['image_path'] for batch in IterationBasedSampler(
        len(ds), batch_size=4, num_iters=3, rank=0, world_size=1, seed=5) for i in batch}
    assert len(batches['plain']) == 3
    for name in ('cached', 'warm'):
        assert len(batches[name]) == 3 and all(torch.equal(a, b) for a, b in zip(batches['plain'], batches[name]))
    assert len(_entries(cache)) == len(used)
