"""Dataset metadata: the built-in sets match their shipped subsets; user files (JSON, or a Python literal that
is parsed, never run) are validated and drive the config with DATASET.* overrides only."""
import json
import os.path as osp

import pytest

from cvpack.config.megvii import megvii_config
from cvpack.config.simple_baselines import simple_baselines_config
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
    (dict(flip_pairs=[['left_hand', 'left_foot']]), r"meta.json: flip_pairs\[0\] = \['left_hand', 'left_foot'\]: "
                                                   r"'left_foot' is not one of keypoint_names \(head, left_hand"),
    (dict(flip_pairs=[[1, 1]]), r'meta.json: flip_pairs\[0\] = \[1, 1\] pairs joint 1 \(left_hand\) with itself'),
    (dict(flip_pairs=[[1, 2], [2, 0]]), r'meta.json: flip_pairs\[1\] uses joint 2 \(right_hand\) again; it is '
                                        r'already in flip_pairs\[0\]'),
    (dict(flip_pairs=[[1, 2, 0]]), r'meta.json: flip_pairs\[0\] = \[1, 2, 0\] is not a pair'),
    (dict(flip_pairs=[[True, 2]]), r'meta.json: flip_pairs\[0\] = \[True, 2\]: True is neither a joint index'),
    (dict(flip_pairs={'1': 2}), r'meta.json: flip_pairs must be a list, got dict'),
    (dict(sigmas=[0.1, 0.1]), r'meta.json: sigmas has 2 values, expected 3 \(one per keypoint\)'),
    (dict(sigmas=[0.1, 0, 0.1]), r'meta.json: sigmas\[1\] = 0 is not a finite number > 0'),
    (dict(sigmas=[0.1, float('nan'), 0.1]), r'meta.json: sigmas\[1\] = nan is not a finite number > 0'),
    (dict(sigmas=[0.1, '0.1', 0.1]), r"meta.json: sigmas\[1\] = '0.1' is not a finite number > 0"),
    (dict(skeleton=[[0, 'a']]), r"meta.json: skeleton\[0\] = \[0, 'a'\]: 'a' is not one of keypoint_names"),
    (dict(skeleton=[[0, 5]]), r'meta.json: skeleton\[0\] = \[0, 5\] names joint 5, but there are 3'),
    (dict(skeleton=[[0, 0]]), r'meta.json: skeleton\[0\] = \[0, 0\] pairs joint 0 \(head\) with itself'),
    (dict(skeleton=[[0, 1], [1, 0]]), r'meta.json: skeleton\[1\] repeats the link of skeleton\[0\] '
                                      r'\(left_hand - head\)'),
    (dict(keypoint_names=['head', 'hand', 'hand']), r"meta.json: keypoint_names\[2\] = 'hand' repeats "
                                                    r"keypoint_names\[1\] = 'hand'"),
    (dict(keypoint_names=['head', 'Left Hand', 'left_hand']), r"keypoint_names\[2\] = 'left_hand' repeats "
                                                              r"keypoint_names\[1\] = 'Left Hand'"),
    (dict(keypoint_names=['head', '', 'x']), r"meta.json: keypoint_names\[1\] = '' is not a non-empty string"),
    (dict(keypoint_names=['head', 7, 'x']), r'meta.json: keypoint_names\[1\] = 7 is not a non-empty string'),
    (dict(keypoint_names=[]), r'meta.json: keypoint_names must be a non-empty list of strings'),
    (dict(keypoint_colors=[[0, 0, 0]] * 2), r'meta.json: keypoint_colors has 2 colours, expected 3'),
    (dict(keypoint_colors=[[0, 0, 0], [0, 256, 0], [0, 0, 0]]),
     r'meta.json: keypoint_colors\[1\] = \[0, 256, 0\] is not a BGR triple of 3 ints in 0..255'),
    (dict(skeleton_colors=[[0, 0, 0], [0, 0, 1.5]]), r'meta.json: skeleton_colors\[1\] = \[0, 0, 1.5\] is not a BGR'),
    (dict(skeleton_colors=[[0, 0, 0], ['a', 0, 0]]), r"meta.json: skeleton_colors\[1\] = \['a', 0, 0\] is not"),
    (dict(skeleton_colors=[[0, 0, 0], [0, 0]]), r'meta.json: skeleton_colors\[1\] = \[0, 0\] is not a BGR'),
    (dict(upper_body_ids=[0, 7]), r'meta.json: upper_body_ids\[1\] = 7 names joint 7, but there are 3'),
    (dict(upper_body_ids=[0, 'tail']), r"meta.json: upper_body_ids\[1\] = 'tail': 'tail' is not one of"),
    (dict(upper_body_ids=[0, 1, 1]), r'meta.json: upper_body_ids lists joint\(s\) \[1\] twice'),
    (dict(flip_pairs_=[[1, 2]]), r"meta.json: unknown field\(s\) 'flip_pairs_' \(known: name, keypoint_names"),
    (dict(name='my/pose'), r"meta.json: name = 'my/pose' must be a non-empty string of letters"),
    (dict(name=''), r"meta.json: name = '' must be"),
    (dict(extra=[1]), r'meta.json: extra must be an object/dict, got list'),
    (dict(name='COCO'), r'built in'),
])
def test_bad_meta_file_names_file_and_field(tmp_path, change, message):
    path = tmp_path / 'meta.json'
    path.write_text(json.dumps(dict(USER, **change)))
    with pytest.raises(ValueError, match=message):
        load_meta_file(str(path))


@pytest.mark.parametrize('name', ['COCO', 'OCHUMAN', 'POSETRACK18', 'MPII', 'CROWDPOSE', 'AIC'])
def test_a_file_copied_from_a_builtin_meta_loads(tmp_path, name):
    """COCO's own split has the hips in both body lists (Megvii's); a user's copy of it was refused as overlapping."""
    m = get_dataset_meta(name)
    fields = dict(name='MY_' + name, keypoint_names=list(m.keypoint_names), flip_pairs=[list(p) for p in m.flip_pairs],
                  skeleton=[list(p) for p in m.skeleton], sigmas=list(m.sigmas), upper_body_ids=list(m.upper_body_ids),
                  lower_body_ids=list(m.lower_body_ids))
    path = tmp_path / 'meta.json'
    path.write_text(json.dumps(fields))
    meta = load_meta_file(str(path))
    assert (meta.upper_body_ids, meta.lower_body_ids, meta.flip_pairs) == (m.upper_body_ids, m.lower_body_ids,
                                                                          m.flip_pairs)


def test_joints_by_name_and_colours(tmp_path):
    path = tmp_path / 'meta.json'
    path.write_text(json.dumps(dict(USER, name='TRIPOD_NAMES', flip_pairs=[['Left Hand', 'right_hand']],
                                    skeleton=[['head', 1], [0, 'right-hand']], upper_body_ids=['head'],
                                    lower_body_ids=[1, 'right_hand'], keypoint_colors=[[0, 0, 0], [255, 1, 2],
                                                                                       [3, 4, 5]])))
    meta = load_meta_file(str(path))
    assert meta.flip_pairs == ((1, 2),) and meta.skeleton == ((0, 1), (0, 2))
    assert (meta.upper_body_ids, meta.lower_body_ids) == ((0,), (1, 2))
    assert meta.keypoint_colors == ((0, 0, 0), (255, 1, 2), (3, 4, 5)) and meta.skeleton_colors == ((128,) * 3,) * 2


@pytest.mark.parametrize('name, text, message', [
    ('meta.json', '', r'meta.json: the dataset metadata file is empty'),
    ('meta.json', ' \n', r'meta.json: the dataset metadata file is empty'),
    ('meta.json', '{"name": "A",\n "sigmas": [1, 2,]}', r'meta.json: not valid JSON at line 2 column 18'),
    ('meta.json', '{"name": "A", "keypoint_names": ["a"', r'meta.json: not valid JSON at line 1 column 37'),
    ('meta.json', '[1, 2]', r'meta.json: dataset metadata must be an object/dict, got list'),
    ('meta.json', '{"name": "A", "name": "B"}', r'meta.json: field\(s\) name given twice'),
    ('meta.py', '', r'meta.py: the dataset metadata file is empty'),
    ('meta.py', 'META = {\n', r'meta.py: not valid Python at line 1'),
    ('meta.py', 'META = {}\0\n', r'meta.py: not valid Python: source code .* null bytes'),
    ('meta.py', '"""doc"""\n', r'meta.py: no literal assignment "META = \{...\}"'),
    ('meta.py', 'META = [1]\n', r'meta.py: dataset metadata must be an object/dict, got list'),
    ('meta.py', 'META = {}\nMETA = {}\n', r'meta.py: META is assigned 2 times'),
    ('meta.py', 'META = dict(name="A")\n', r'meta.py: line 1: META must be a literal dict'),
    ('meta.py', 'import os\nMETA = {}\n', r'meta.py: line 1: a metadata file holds only "META = \{...\}" .* '
                                           r'found: import os'),
    ('meta.yaml', 'name: A', r'meta.yaml: dataset metadata must be a .json or .py file'),
])
def test_bad_meta_file_text_is_named(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_meta_file(str(path))


def test_meta_file_path_errors(tmp_path):
    (tmp_path / 'meta.json').mkdir()
    with pytest.raises(ValueError, match=r'meta.json: dataset metadata must be a file, this is a directory'):
        load_meta_file(str(tmp_path / 'meta.json'))
    with pytest.raises(FileNotFoundError, match=r'dataset metadata file .*nope.json does not exist'):
        load_meta_file(str(tmp_path / 'nope.json'))
    (tmp_path / 'latin1.json').write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ValueError, match=r'latin1.json: not UTF-8 text'):
        load_meta_file(str(tmp_path / 'latin1.json'))


def test_python_meta_is_parsed_not_run(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'meta.py'
    path.write_text('"""My keypoints."""\nMETA = %r\n' % dict(USER, name='TRIPOD_PY'))
    meta = load_meta_file(str(path))
    assert meta.name == 'TRIPOD_PY' and meta.flip_permutation() == [0, 2, 1]
    # code next to the literal is refused, not run and not silently ignored
    path.write_text('open(%r, "w").close()\nMETA = %r\n' % (str(marker), dict(USER, name='TRIPOD_PY2')))
    with pytest.raises(ValueError, match=r'meta.py: line 1: a metadata file holds only .* found: open\('):
        load_meta_file(str(path))
    assert not marker.exists()
    path.write_text('META = {"name": __import__("os").system("touch %s")}\n' % marker)
    with pytest.raises(ValueError, match='meta.py: line 1: META must be a literal dict'):
        load_meta_file(str(path))
    assert not marker.exists()


def test_bad_meta_file_override_is_a_config_error(tmp_path):
    from cvpack.config import ConfigError
    path = tmp_path / 'meta.json'
    path.write_text(json.dumps(dict(USER, sigmas=[0.1, -1, 0.1])))
    with pytest.raises(ConfigError, match=r"DATASET.META_FILE.*meta.json: sigmas\[1\] = -1"):
        merge_from_list(megvii_config(str(tmp_path), dataset='COCO'), ['DATASET.META_FILE', str(path)])


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
    (lambda p: p.write_bytes(b'{"name": "\xff\xfe"}'), '{path}: not UTF-8 text'),
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


@pytest.mark.parametrize('overrides, det_file, gt_boxes', [
    (['DATASET.NAME', 'CROWDPOSE'], 'annotations/det_for_crowd_test_0.1_0.5.json', False),   # mmpose's files
    (['DATASET.NAME', 'POSETRACK18'], 'annotations/posetrack18_val_human_detections.json', False),
    (['DATASET.NAME', 'OCHUMAN'], '', True),                        # no public detections: the annotated boxes
    (['DATASET.NAME', 'AIC'], '', True),
    (['DATASET.NAME', 'AIC', 'TEST.USE_GT_BBOX', 'False'], '', False),     # given keys win
    (['DATASET.NAME', 'CROWDPOSE', 'TEST.DET_FILE', 'det_json/mine.json'], 'det_json/mine.json', False),
    (['DATASET.NAME', 'OCHUMAN', 'TEST.DET_FILE', 'dets.json'], 'dets.json', False),
    (['DATASET.NAME', 'COCO'], 'det_json/COCO_val2017_detections_AP_H_56_person.json', False),   # no switch
])
def test_dataset_switch_brings_its_test_boxes(tmp_path, overrides, det_file, gt_boxes):
    """COCO's detection file no longer follows a switch of DATASET.NAME (test.py on CrowdPose failed with
    "TEST.DET_FILE (.../CROWDPOSE/det_json/COCO_val2017_detections_AP_H_56_person.json): file not found")."""
    for cfg in (megvii_config(str(tmp_path), dataset='COCO'), simple_baselines_config(str(tmp_path))):
        cfg = merge_from_list(cfg, list(overrides))
        assert (cfg.TEST.DET_FILE, cfg.TEST.USE_GT_BBOX) == (det_file, gt_boxes)


def test_user_dataset_tests_on_its_annotated_boxes(tmp_path):
    path = tmp_path / 'tripod.json'
    path.write_text(json.dumps(USER))
    cfg = merge_from_list(megvii_config(str(tmp_path), dataset='COCO'), ['DATASET.META_FILE', str(path)])
    assert (cfg.TEST.DET_FILE, cfg.TEST.USE_GT_BBOX) == ('', True)
