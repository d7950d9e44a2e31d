"""Dataset metadata: the built-in sets match their shipped subsets; user files (JSON, or a Python literal that
is parsed, never run) are validated and drive the config with DATASET.* overrides only."""
import json
import os.path as osp

import pytest

from cvpack.config.megvii import megvii_config
from cvpack.config import merge_from_list
from cvpack.data.coco import load_coco_gt
from cvpack.data.meta import get_dataset_meta
from cvpack.data.meta_file import load_meta_file

SUBSETS = {'CROWDPOSE': 'crowdpose_subset/annotations/test_crowdpose.json',
           'OCHUMAN': 'ochuman_subset/annotations/test_ochuman.json',
           'AIC': 'aic_subset/annotations/test_aic.json',
           'POSETRACK18': 'posetrack18_subset/annotations/test_posetrack18_val.json'}
USER = dict(name='TRIPOD', keypoint_names=['head', 'left_hand', 'right_hand'], flip_pairs=[[1, 2]],
            skeleton=[[0, 1], [0, 2]], sigmas=[0.079, 0.062, 0.062], upper_body_ids=[0, 1, 2], lower_body_ids=[])


@pytest.mark.parametrize('name, ann', sorted(SUBSETS.items()))
def test_builtin_meta_matches_subset(repo_root, name, ann):
    meta = get_dataset_meta(name)
    images, anns = load_coco_gt(osp.join(repo_root, 'dataset', ann), meta)    # names + count checked
    assert len(anns) > 0 and meta.num_keypoints == {'CROWDPOSE': 14, 'AIC': 14}.get(name, 17)
    perm = meta.flip_permutation()
    assert [perm[p] for p in perm] == list(range(meta.num_keypoints))       # a flip twice is the identity
    assert len(meta.sigmas) == len(meta.keypoint_colors) == meta.num_keypoints
    assert len(meta.skeleton_colors) == len(meta.skeleton)
    names = meta.keypoint_names
    for a, b in meta.flip_pairs:                                              # pairs are left/right of one part
        strip = lambda n: n.lower().replace('left', '').replace('right', '')   # noqa: E731
        assert strip(names[a]) == strip(names[b]) and names[a] != names[b]


def test_mismatched_meta_names_both_files(repo_root, tmp_path):
    path = tmp_path / 'meta.json'
    path.write_text(json.dumps(USER))
    meta = load_meta_file(str(path))
    with pytest.raises(ValueError, match=r'test_crowdpose.json.*14 keypoints.*meta.json has 3'):
        load_coco_gt(osp.join(repo_root, 'dataset', SUBSETS['CROWDPOSE']), meta)


@pytest.mark.parametrize('change, message', [
    (dict(flip_pairs=[[1, 3]]), r'meta.json: flip_pairs\[0\] = \[1, 3\] names joint 3, but there are 3'),
    (dict(sigmas=[0.1, 0.1]), r'meta.json: sigmas must be 3 positive numbers'),
    (dict(skeleton=[[0, 'a']]), r'meta.json: skeleton\[0\]'),
    (dict(flip_pairs=[[1, 2], [2, 0]]), r'meta.json: flip_pairs .* use a joint twice'),
    (dict(name='COCO'), r'built in'),
])
def test_bad_meta_file_names_file_and_field(tmp_path, change, message):
    path = tmp_path / 'meta.json'
    path.write_text(json.dumps(dict(USER, **change)))
    with pytest.raises(ValueError, match=message):
        load_meta_file(str(path))


def test_python_meta_is_parsed_not_run(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'meta.py'
    path.write_text('open(%r, "w").close()\nMETA = %r\n' % (str(marker), dict(USER, name='TRIPOD_PY')))
    meta = load_meta_file(str(path))
    assert meta.name == 'TRIPOD_PY' and meta.flip_permutation() == [0, 2, 1] and not marker.exists()
    path.write_text('import json\nMETA = json.loads("{}")\n')
    with pytest.raises(ValueError, match='meta.py: META must be a literal dict'):
        load_meta_file(str(path))


def test_dataset_overrides_rederive_keypoint_keys(tmp_path):
    cfg = megvii_config(str(tmp_path), dataset='COCO')
    cfg = merge_from_list(cfg, ['DATASET.NAME', 'crowdpose'])
    assert cfg.DATASET.NAME == 'CROWDPOSE' and cfg.DATASET.KEYPOINT.NUM == 14 == cfg.MODEL.OUTPUT_NUM
    assert cfg.DATASET.KEYPOINT.FLIP_PAIRS == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert cfg.DATASET.VAL_ANN == 'annotations/mmpose_crowdpose_test.json'
    assert cfg.DATASET.ROOT == osp.join(str(tmp_path), 'dataset', 'CROWDPOSE')
    path = tmp_path / 'tripod.json'
    path.write_text(json.dumps(USER))
    cfg = merge_from_list(megvii_config(str(tmp_path), dataset='COCO'),
                          ['DATASET.META_FILE', str(path), 'DATASET.ROOT', '/data/tripod'])
    assert (cfg.DATASET.NAME, cfg.DATASET.KEYPOINT.NUM, cfg.DATASET.ROOT) == ('TRIPOD', 3, '/data/tripod')
    assert cfg.DATASET.KEYPOINT.FLIP_PAIRS == [[1, 2]] and cfg.DATASET.KEYPOINT.LOWER_BODY_IDS == []
    with pytest.raises(ValueError, match='KEYPOINT.NUM is 17 but the AIC metadata has 14'):
        merge_from_list(megvii_config(str(tmp_path), dataset='COCO'),
                        ['DATASET.NAME', 'AIC', 'DATASET.KEYPOINT.NUM', '17'])


@pytest.mark.parametrize('write, message', [
    (None, 'dataset metadata file {path} does not exist'),
    (lambda p: p.write_text('{"name": "TRIPOD",'), '{path}: not valid JSON'),
    (lambda p: p.write_bytes(b'{"name": "\xff\xfe"}'), "{path}: 'utf-8' codec can't decode byte 0xff"),
    (lambda p: p.write_text(json.dumps(dict(USER, name='COCO'))), "dataset name 'COCO' is built in"),
])
def test_bad_meta_file_is_a_config_error_naming_it(tmp_path, write, message):
    """A bad DATASET.META_FILE raised FileNotFoundError / ValueError / UnicodeDecodeError (without the file's name)
    with a traceback from train.py and config.py; now a ConfigError (one line: a usage error, exit 2) naming key
    and file."""
    from cvpack.config import ConfigError
    path = tmp_path / 'meta.json'
    if write is not None:
        write(path)
    with pytest.raises(ConfigError) as info:
        merge_from_list(megvii_config(str(tmp_path)), ['DATASET.META_FILE', str(path)])
    text = str(info.value)
    assert text.startswith('config key DATASET.META_FILE: ') and '\n' not in text
    assert message.format(path=path) in text and str(path) in text


def test_config_main_bad_meta_file_exits_2_with_one_line(tmp_path, capsys):
    from cvpack.config import config_main
    path = tmp_path / 'missing.json'
    with pytest.raises(SystemExit) as info:
        config_main(megvii_config(str(tmp_path / 'exp')), ['DATASET.META_FILE', str(path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count('\n') == 1
    assert err.endswith('error: config key DATASET.META_FILE: dataset metadata file %s does not exist\n' % path)


@pytest.mark.parametrize('dataset, keys, num, meta', [
    ('COCO', ['DATASET.KEYPOINT.NUM', '16'], 16, 'COCO metadata has 17'),   # an override alone
    ('MPII', ['SOLVER.MAX_ITER', '10'], 17, 'MPII metadata has 16'),         # set in config.py (below)
    ('COCO', ['DATASET.NAME', 'ochuman', 'DATASET.KEYPOINT.NUM', '17'], None, None),   # OCHuman has 17: fine
])
def test_keypoint_num_is_checked_for_every_dataset(tmp_path, dataset, keys, num, meta):
    """The check ran only when DATASET.NAME / META_FILE changed: a config.py or an override changing
    DATASET.KEYPOINT.NUM alone built a model with the wrong number of heatmaps."""
    from cvpack.config import ConfigError
    cfg = megvii_config(str(tmp_path), dataset=dataset)
    if dataset == 'MPII':
        cfg.DATASET.KEYPOINT.NUM = 17          # as a config.py would
    if meta is None:
        assert merge_from_list(cfg, keys).DATASET.KEYPOINT.NUM == 17
        return
    with pytest.raises(ConfigError, match=r'^config key DATASET\.KEYPOINT\.NUM is %d but the %s keypoints'
                       % (num, meta)):
        merge_from_list(cfg, keys)
