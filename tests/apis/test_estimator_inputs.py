"""PoseEstimator on bad input: every error names the image (index or path), the box (index) or the file, and
detection files are filtered exactly as test.py filters them. The pose model is one seeded 4x4 stride-4
convolution (the exps' heatmap contract) so that only the API's own code is under test; nothing downloaded."""
import copy
import json
import logging

import cv2
import numpy as np
import pytest
import torch

from cvpack.apis import PoseEstimator
from cvpack.data import build_dataset
from cvpack.data.io import ImageReadError
from tests.apis.helpers import RSN18, exp_path

FAST = ['TEST.FLIP', 'False']


@pytest.fixture(scope='module')
def est(repo_root):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 17, 4, stride=4).eval()
    return PoseEstimator(exp_path(repo_root, RSN18), device='cpu', opts=FAST, model=conv)


@pytest.fixture(scope='module')
def astronaut(repo_root):
    return '%s/dataset/demo/astronaut.png' % repo_root


def _boxes(people):
    return sorted((p.box.tolist(), p.box_score) for p in people)


def test_caller_box_errors_name_the_box(est, astronaut):
    good = [0, 0, 10, 10]
    for bad, why in (([0, 0, 10], r' is \[0, 0, 10\]; boxes are'), ([0, 0, 'a', 10], r"\[2\] is 'a' \(str\)"),
                     ([0, 0, '10', 10], r"\[2\] is '10'"), ([0, float('nan'), 10, 10], r'\[1\] is nan'),
                     ([0, 0, 10, float('inf')], r'\[3\] is inf'), ([0, 0, -5, 10], r' is .*: negative width'),
                     ('abcd', " is 'abcd'"), ([0, 0, 10, 10, None], r'\[4\] is None')):
        with pytest.raises(ValueError, match=r'astronaut.png: box #1%s' % why):
            est(astronaut, boxes=[good, bad])


def test_boxes_as_tensors_and_arrays_as_lists(est, astronaut):
    """A detector's boxes as a torch tensor (torchvision's output, after xyxy -> xywh) were refused item by item
    ('box #0[0] is tensor(40.) (Tensor), not a number'); they give the same people as the list."""
    listed = [[40.0, 20.0, 200.0, 300.0, 0.75], [250.0, 60.0, 150.0, 250.0, 0.5]]   # exact in float32
    want = _boxes(est(astronaut, boxes=listed))
    assert len(want) == 2
    assert _boxes(est(astronaut, boxes=torch.tensor(listed))) == want
    assert _boxes(est(astronaut, boxes=np.asarray(listed, np.float32))) == want
    assert _boxes(est(astronaut, boxes=[torch.tensor(b) for b in listed])) == want
    one = _boxes(est(astronaut, boxes=torch.tensor(listed[0])))       # one box, shape (5,)
    assert one == _boxes(est(astronaut, boxes=listed[0])) and len(one) == 1


def test_degenerate_boxes_skipped_outside_boxes_warned(est, astronaut, log_capture, one_thread):
    boxes = [[100, 20, 250, 480], [300, 100, 120, 200, 0.5]]
    expected = est(astronaut, boxes=boxes)
    with log_capture.at_level(logging.WARNING, logger='cvpack'):
        people = est(astronaut, boxes=[boxes[0], [5, 5, 0, 30], boxes[1], [5, 5, 30, 0]])
    assert _boxes(people) == _boxes(expected) and len(people) == 2
    skipped = [r.getMessage() for r in log_capture.records if 'skipped' in r.getMessage()]
    assert len(skipped) == 1 and 'skipped 2 boxes (zero width or height)' in skipped[0] \
        and 'box #1 ' in skipped[0] and 'box #3 ' in skipped[0]
    log_capture.clear()
    h, w = cv2.imread(astronaut).shape[:2]
    with log_capture.at_level(logging.WARNING, logger='cvpack'):
        people = est(astronaut, boxes=[[w + 5, 0, 50, 50], boxes[0], [-60, 10, 50, 50]])
    assert len(people) == 3   # kept, as test.py keeps such detections
    text = log_capture.text
    assert 'entirely outside the image' in text and 'box #0 ' in text and 'box #2 ' in text and 'box #1 ' not in text


def test_image_errors_name_the_image(est, astronaut, tmp_path):
    bgr = cv2.imread(astronaut)
    for bad, why in ((np.zeros((0, 10, 3), np.uint8), 'is empty: 10 x 0 pixels'),
                     (np.zeros((10, 0, 3), np.uint8), 'is empty: 0 x 10 pixels'),
                     (None, 'is None, not an image'),
                     (bgr.astype(np.float32), r'expected an \(H, W, 3\) uint8 image, got float32'),
                     (bgr[..., 0], r'expected an \(H, W, 3\) uint8 image, got uint8 \(512, 512\)'),
                     (np.dstack([bgr, bgr[..., :1]]), r'expected .*, got uint8 \(512, 512, 4\)')):
        with pytest.raises(ValueError, match='<array #1> %s' % why if why.startswith('is') else
                           '<array #1>: %s' % why):
            est([bgr, bad])
    folder = tmp_path / 'folder.png'
    folder.mkdir()
    with pytest.raises(ImageReadError, match='cannot read image file .*folder.png'):
        est(str(folder))
    with pytest.raises(ValueError, match="color must be 'bgr' .* got 'BGR'"):
        est(astronaut, color='BGR')          # also for a path, where the colour order is not used
    with pytest.raises(ValueError, match="color must be 'bgr' .* got 'RGB'"):
        est([astronaut, bgr], color='RGB')


def test_det_json_file_errors_name_file_and_detection(est, astronaut, tmp_path):
    tmp_path.joinpath('dets_dir').mkdir()
    with pytest.raises(ValueError, match='detection file .*dets_dir is a directory'):
        est(astronaut, det_json=str(tmp_path / 'dets_dir'))
    with pytest.raises(FileNotFoundError, match='detection file not found: .*missing.json'):
        est(astronaut, det_json=str(tmp_path / 'missing.json'))
    good = {'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 10, 10], 'score': 0.9}
    for field, value, why in (('bbox', [0, 'a', 10, 10], r"bbox\[1\] is 'a'"),
                              ('bbox', [0, 0, float('nan'), 10], r'bbox\[2\] is nan'),
                              ('bbox', [0, 0, 10], 'bbox has 3 values, expected 4'),
                              ('score', '0.9', "score is '0.9' \\(str\\), not a number"),
                              ('score', True, 'score is True'), ('image_id', True, 'image id is True'),
                              ('image_id', [1], r'image id is \[1\]')):
        path = tmp_path / 'dets.json'
        path.write_text(json.dumps([good, dict(good, **{field: value})]))
        with pytest.raises(ValueError, match=r'dets.json: detection #1.*%s' % why):
            est(astronaut, det_json=str(path))


def test_det_json_filtered_as_test_py(est, coco_subset, tmp_path, log_capture, one_thread):
    """The boxes the API takes from a detection file are test.py's val records for the same file (score
    threshold, category, degenerate boxes, matching by image id) and its results are test.py's crops."""
    det_file = '%s/det_json/COCO_val2017_detections_AP_H_56_person.json' % coco_subset
    dets = json.load(open(det_file))
    ids = sorted({d['image_id'] for d in dets})[:2]
    dets = [d for d in dets if d['image_id'] in ids]
    dets += [dict(dets[0], bbox=dets[0]['bbox'][:2] + [0, 40]), dict(dets[0], bbox=dets[0]['bbox'][:2] + [-3, 40]),
             dict(dets[0], category_id=2), dict(dets[0], score=0.49)]
    path = tmp_path / 'dets.json'
    path.write_text(json.dumps(dets))
    opts = FAST + ['DATASET.ROOT', coco_subset, 'TEST.DET_FILE', str(path), 'TEST.DET_SCORE_THRESH', '0.5']
    api = PoseEstimator(est.exp_dir, device='cpu', opts=opts, model=est.model)
    records = build_dataset(copy.deepcopy(api.cfg), 'val').records   # test.py's val set for TEST.DET_FILE
    images = sorted({r['image_path'] for r in records})
    assert len(images) == 2
    with log_capture.at_level(logging.WARNING, logger='cvpack'):
        people = api(images, det_json=str(path))
    assert 'skipped 2 detections (degenerate box: w or h <= 0)' in log_capture.text
    for image, found in zip(images, people):
        want = sorted((r['bbox'].tolist(), r['score']) for r in records if r['image_path'] == image)
        got = sorted((p.box.astype(np.float32).tolist(), p.box_score) for p in found)
        assert got == want and len(want) >= 1
        assert all(p.box_score >= 0.5 for p in found)


def test_image_ids_and_to_coco(est, astronaut, tmp_path, one_thread):
    path = tmp_path / 'dets.json'
    path.write_text(json.dumps([{'image_id': 42, 'category_id': 1, 'bbox': [100, 20, 250, 480], 'score': 0.9}]))
    assert len(est(astronaut, det_json=str(path), image_ids=[42])) == 1
    assert len(est(astronaut, det_json=str(path), image_ids=np.array([42]))) == 1   # numpy ids are ints
    with pytest.raises(ValueError, match=r"dets.json: image id '42' of .*astronaut.png \(type str\) can match none of "
                                         r'the image ids in this file \(type int\)'):
        est(astronaut, det_json=str(path), image_ids=['42'])
    for bad in (True, 42.0, None, [42]):
        with pytest.raises(ValueError, match=r'image_ids\[0\]: image id is'):
            est(astronaut, det_json=str(path), image_ids=[bad])
    with pytest.raises(ValueError, match='image_ids must be a list'):
        est([astronaut], image_ids='42')
    person = est(astronaut, boxes=[[100, 20, 250, 480]])[0]
    assert person.to_coco(np.int64(7))['image_id'] == 7 and type(person.to_coco(np.int64(7))['image_id']) is int
    assert person.to_coco('frame_7')['image_id'] == 'frame_7'     # str ids, as some COCO-format sets use
    for bad in (True, 7.0, None):
        with pytest.raises(ValueError, match='Person.to_coco: image id is'):
            person.to_coco(bad)
    with pytest.raises(ValueError, match="extra field.* score would overwrite"):
        person.to_coco(7, score=1.0)
    assert person.to_coco(7, file_name='a.png')['file_name'] == 'a.png'


def test_constructor_arguments(est, repo_root):
    exp = exp_path(repo_root, RSN18)
    for bad in (0, -1, 2.5, True, '8'):
        with pytest.raises(ValueError, match='batch_size must be a positive integer, got %r' % (bad,)):
            PoseEstimator(exp, device='cpu', model=est.model, batch_size=bad)
    assert PoseEstimator(exp, device='cpu', model=est.model, batch_size=np.int64(3)).batch_size == 3
    with pytest.raises(ValueError, match="box_thresh is '0.5'"):
        PoseEstimator(exp, device='cpu', model=est.model, box_thresh='0.5')
    with pytest.raises(ValueError, match='det_score_thresh is nan'):
        PoseEstimator(exp, device='cpu', model=est.model, det_score_thresh=float('nan'))
    with pytest.raises(TypeError, match="unexpected keyword argument 'treshold'"):
        PoseEstimator(exp, device='cpu', model=est.model, treshold=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'box'"):
        est(np.zeros((8, 8, 3), np.uint8), box=[0, 0, 4, 4])


class _NonFinite(torch.nn.Module):
    """The seeded convolution, with heatmap channels 0-2 NaN and channel 3 inf (what NaN weights or an fp16
    overflow give)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        out = self.conv(x).clone()
        out[:, :3] = float('nan')
        out[:, 3] = float('inf')
        return out


def test_non_finite_model_output_is_an_error_naming_image_and_box(est, repo_root, astronaut):
    """NaN/inf heatmaps gave people with NaN keypoint scores and a NaN score, silently (to_coco then wrote NaN,
    which no JSON reader accepts)."""
    bad = PoseEstimator(exp_path(repo_root, RSN18), device='cpu', opts=FAST, model=_NonFinite(est.model))
    with pytest.raises(ValueError, match=r'NaN/inf heatmaps for 2 of the 2 people of the 1 image of this call: '
                       r'.*astronaut\.png: 2 of its 2 people \(boxes \[10\.0, 10\.0, 100\.0, 200\.0\]; '
                       r'\[50\.0, 20\.0, 60\.0, 80\.0\]\)'):
        bad(astronaut, boxes=[[10, 10, 100, 200], [50, 20, 60, 80]])
    assert len(est(astronaut, boxes=[[10, 10, 100, 200]])) == 1   # the finite model, same boxes: no error


class _NaNOnDarkCrops(torch.nn.Module):
    """The seeded convolution, NaN for the samples whose normalised crop is all below 0 (a black image's): NaN
    for some inputs only, as a model with an overflowing layer gives."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        out = self.conv(x).clone()
        out[x.flatten(1).amax(dim=1) < 0] = float('nan')
        return out


def test_non_finite_counts_the_people_of_the_call_per_image(est, repo_root, astronaut, tmp_path):
    """Over several images the error counted the people of the first failing batch ('2 of 2 people', batch_size
    2) while 5 of the call's 7 were NaN: it counts over the call and names each image with its own count."""
    black = [str(tmp_path / n) for n in ('black1.png', 'black2.png')]
    for path in black:
        cv2.imwrite(path, np.zeros((120, 100, 3), np.uint8))
    bad = PoseEstimator(exp_path(repo_root, RSN18), device='cpu', opts=FAST, model=_NaNOnDarkCrops(est.model),
                        batch_size=2)
    boxes = [[[10, 10, 100, 200], [50, 20, 60, 80]], [[0, 0, 50, 60], [10, 10, 40, 40], [20, 20, 30, 30]],
             [[0, 0, 50, 60], [5, 5, 40, 40]]]
    with pytest.raises(ValueError) as info:
        bad([astronaut] + black, boxes=boxes)
    msg = str(info.value)
    assert 'NaN/inf heatmaps for 5 of the 7 people of the 3 images' in msg, msg
    assert 'black1.png: 3 of its 3 people (boxes [0.0, 0.0, 50.0, 60.0]; ' in msg, msg
    assert 'black2.png: 2 of its 2 people' in msg and 'astronaut' not in msg, msg
    assert len(est([astronaut] + black, boxes=boxes)) == 3   # the finite model, same boxes: no error
