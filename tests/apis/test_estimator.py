"""PoseEstimator: every box source, image inputs and colour orders, whole-image models, model objects, errors."""
import copy
import json

import cv2
import numpy as np
import pytest
import torch

from cvpack.apis import PoseEstimator, WeightsMismatchError
from cvpack.data.io import ImageReadError
from tests.apis.helpers import KPRCNN, RSN18, TINY_DETECTION, exp_path, random_weights

FAST = ['TEST.FLIP', 'False']   # one forward per crop keeps the tests quick; flip is covered by test_identity


@pytest.fixture(scope='module')
def rsn(tmp_path_factory, repo_root):
    exp = exp_path(repo_root, RSN18)
    weights = random_weights(exp, tmp_path_factory.mktemp('w') / 'rsn18.pth')
    return exp, weights, PoseEstimator(exp, weights, device='cpu', opts=FAST)


@pytest.fixture(scope='module')
def kprcnn(tmp_path_factory, repo_root):
    exp = exp_path(repo_root, KPRCNN)
    weights = random_weights(exp, tmp_path_factory.mktemp('w') / 'kprcnn.pth', TINY_DETECTION)
    return exp, weights, PoseEstimator(exp, weights, device='cpu', opts=TINY_DETECTION)


@pytest.fixture(scope='module')
def astronaut(repo_root):
    return '%s/dataset/demo/astronaut.png' % repo_root


def _same(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.keypoints, q.keypoints)
        assert p.score == q.score and p.box_score == q.box_score
        np.testing.assert_array_equal(p.box, q.box)


def test_caller_boxes_and_inputs(rsn, astronaut, one_thread):
    _, _, est = rsn
    boxes = [[100, 20, 250, 480], [300, 100, 120, 200, 0.5]]
    people = est(astronaut, boxes=boxes)
    assert [list(p.box) for p in people] == [[100, 20, 250, 480], [300, 100, 120, 200]]
    assert [p.box_score for p in people] == [1.0, 0.5]
    assert people[0].score >= people[1].score
    for p in people:
        assert p.keypoints.shape == (17, 3) and p.keypoint_names == est.keypoint_names
        # megvii rescoring: box score x mean keypoint score
        assert p.score == pytest.approx(p.box_score * p.keypoints[:, 2].mean())
        x, y, w, h = p.box   # the crop (box extended by TEST.X/Y_EXTENTION, aspect fitted) holds the joints
        assert np.all(p.keypoints[:, 0] > x - w) and np.all(p.keypoints[:, 0] < x + 2 * w)
    bgr = cv2.imread(astronaut)
    _same(est(bgr, boxes=boxes), people)                                    # BGR array (default color)
    _same(est(np.ascontiguousarray(bgr[..., ::-1]), boxes=boxes, color='rgb'), people)   # RGB array, said so
    assert not np.array_equal(est(bgr, boxes=boxes, color='rgb')[0].keypoints, people[0].keypoints)
    both = est([astronaut, bgr], boxes=[boxes, boxes[:1]])                  # a list: one list of people per image
    _same(both[0], people)
    assert len(both[1]) == 1
    coco = people[1].to_coco(7, file_name='astronaut.png')
    assert coco['image_id'] == 7 and coco['category_id'] == 1 and coco['file_name'] == 'astronaut.png'
    assert coco['keypoints'][:3] == list(people[1].keypoints[0]) and coco['bbox'] == [300, 100, 120, 200]


def test_det_json_by_file_name_and_image_id(rsn, astronaut, tmp_path, one_thread):
    exp, weights, est = rsn
    boxes = [[100, 20, 250, 480, 0.9], [300, 100, 120, 200, 0.3]]
    expected = est(astronaut, boxes=boxes)
    by_name = tmp_path / 'by_name.json'
    by_name.write_text(json.dumps([{'file_name': 'some/dir/astronaut.png', 'category_id': 1, 'bbox': b[:4],
                                    'score': b[4]} for b in boxes] +
                                  [{'file_name': 'other.png', 'category_id': 1, 'bbox': [0, 0, 9, 9], 'score': 1}]))
    _same(est(astronaut, det_json=str(by_name)), expected)
    by_id = tmp_path / 'by_id.json'
    by_id.write_text(json.dumps([{'image_id': 42, 'category_id': 1, 'bbox': b[:4], 'score': b[4]} for b in boxes] +
                                [{'image_id': 42, 'category_id': 2, 'bbox': [0, 0, 9, 9], 'score': 1}]))
    _same(est(astronaut, det_json=str(by_id), image_ids=[42]), expected)
    # test.py's TEST.DET_SCORE_THRESH applies to detection files
    strict = PoseEstimator(exp, weights, device='cpu', opts=FAST + ['TEST.DET_SCORE_THRESH', '0.5'])
    _same(strict(astronaut, det_json=str(by_name)), est(astronaut, boxes=boxes[:1]))   # a batch of 1 both
    assert est(astronaut, det_json=str(by_id)) == []        # no id given, no numeric file stem: nothing matches
    # an image the caller read (ImageInput: array + file name, as the demo passes it) matches by its name too
    from cvpack.apis.inputs import ImageInput
    bgr = cv2.imread(astronaut)
    _same(est(ImageInput(bgr, astronaut), det_json=str(by_name)), expected)
    _same(est(ImageInput(np.ascontiguousarray(bgr[..., ::-1]), 'x/astronaut.png', 42), det_json=str(by_id),
              color='rgb'), expected)                     # its image id, its colour order


def test_whole_image_fallback(rsn, astronaut, one_thread):
    _, _, est = rsn
    people = est(astronaut)
    h, w = cv2.imread(astronaut).shape[:2]
    assert len(people) == 1 and list(people[0].box) == [0, 0, w, h]
    _same(est(astronaut, whole_image=True), people)
    _same(est(astronaut, boxes=[[0, 0, w, h]]), people)


def test_whole_image_model_is_an_estimator(kprcnn, coco_subset, one_thread):
    """The API on a path == the exp's predictor on test.py's val sample of that image (file read by the dataset)."""
    from cvpack.data import build_dataset, collate
    from cvpack.inference import build_predictor
    _, _, est = kprcnn
    path = '%s/images/val2017/000000397133.jpg' % coco_subset
    people = est(path)
    assert 1 <= len(people) <= 3
    cfg = copy.deepcopy(est.cfg)
    cfg.DATASET.ROOT = coco_subset
    val = build_dataset(cfg, 'val')
    index = [r['image_id'] for r in val.records].index(397133)
    with torch.no_grad():
        ref = build_predictor(est.cfg)(est.model, collate([val[index]]))
    ref.sort(key=lambda i: -i['score'])
    assert len(ref) == len(people)
    for p, r in zip(people, ref):
        np.testing.assert_array_equal(p.keypoints, np.asarray(r['keypoints'], np.float64))
        assert p.score == r['score'] and list(p.box) == r['bbox'] and p.keypoints.shape == (17, 3)


def test_detector_boxes(rsn, kprcnn, astronaut, one_thread):
    exp, weights, _ = rsn
    _, _, det = kprcnn
    found = det(astronaut)
    est = PoseEstimator(exp, weights, device='cpu', opts=FAST, detector=det, box_thresh=0.0)
    people = est(astronaut)
    assert len(found) >= 1 and len(people) == len(found)
    assert sorted(p.box.tolist() for p in people) == sorted(p.box.tolist() for p in found)
    assert sorted(p.box_score for p in people) == sorted(p.score for p in found)
    assert est.timing['detector'] > 0 and est.timing['pose'] > 0
    high = PoseEstimator(exp, weights, device='cpu', opts=FAST, detector=det, box_thresh=1.01)
    assert high(astronaut) == []                           # every box below the threshold: no people
    assert len(high(astronaut, whole_image=True)) == 1     # whole_image overrides the detector


def test_detector_from_exp_tuple(rsn, kprcnn, astronaut, one_thread):
    exp, weights, _ = rsn
    det_exp, det_weights, det = kprcnn
    est = PoseEstimator(exp, weights, device='cpu', opts=FAST, box_thresh=0.0,
                        detector=(det_exp, det_weights, TINY_DETECTION))
    _same(est(astronaut), PoseEstimator(exp, weights, device='cpu', opts=FAST, detector=det, box_thresh=0.0)(astronaut))


class _ArrayModel:
    """An object with the eval forward contract and no nn.Module (as an ONNX Runtime session wrapper)."""

    def __init__(self, module):
        self.module = module

    def __call__(self, images):
        with torch.no_grad():
            out = self.module(torch.from_numpy(images.cpu().numpy()))
        return torch.from_numpy(out.numpy())


def test_any_model_object(rsn, astronaut, one_thread):
    exp, _, est = rsn
    other = PoseEstimator(exp, device='cpu', opts=FAST, model=_ArrayModel(est.model))
    boxes = [[100, 20, 250, 480]]
    _same(other(astronaut, boxes=boxes), est(astronaut, boxes=boxes))


def test_errors(rsn, kprcnn, astronaut, tmp_path, repo_root):
    exp, weights, est = rsn
    det_exp, det_weights, det = kprcnn
    with pytest.raises(ImageReadError, match='nothere.jpg'):
        est(str(tmp_path / 'nothere.jpg'))
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    with pytest.raises(ImageReadError, match='bad.png'):
        est(str(bad))
    with pytest.raises(WeightsMismatchError, match='kprcnn.pth.*RSN18.coco'):
        PoseEstimator(exp, det_weights, device='cpu')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        PoseEstimator(exp, str(tmp_path / 'missing.pth'), device='cpu')
    with pytest.raises(FileNotFoundError, match='test checkpoint not found: .*empty.*iter-last.pth'):
        PoseEstimator(exp, None, device='cpu', opts=['OUTPUT_DIR', str(tmp_path / 'empty')])   # test.py's choice
    with pytest.raises(ValueError, match='box #1'):
        est(astronaut, boxes=[[0, 0, 10, 10], [0, 0, -1, 10]])
    with pytest.raises(ValueError, match='one box source'):
        est(astronaut, boxes=[[0, 0, 10, 10]], whole_image=True)
    dets = tmp_path / 'dets.json'
    dets.write_text(json.dumps([{'image_id': 1, 'bbox': [0, 0, 1], 'score': 1}]))
    with pytest.raises(ValueError, match='dets.json: detection #0'):
        est(astronaut, det_json=str(dets))
    with pytest.raises(ValueError, match="color must be 'bgr'"):
        est(cv2.imread(astronaut), color='BGR')
    with pytest.raises(ValueError, match='whole-image model'):
        det(astronaut, boxes=[[0, 0, 10, 10]])
    with pytest.raises(ValueError, match='not a whole-image model'):
        PoseEstimator(exp, weights, device='cpu', detector=est)


class _Recorder(_ArrayModel):
    """Records what each forward gets: batch size, autocast dtype, channels-last layout."""

    def __init__(self, module):
        super().__init__(module)
        self.calls = []

    def __call__(self, images):
        self.calls.append((images.shape[0], torch.get_autocast_dtype('cpu') if torch.is_autocast_enabled('cpu')
                           else None, images.is_contiguous(memory_format=torch.channels_last)))
        with torch.no_grad():
            return self.module(images.float())


def test_batches_precision_and_layout(rsn, astronaut, one_thread):
    exp, _, est = rsn
    boxes = [[100, 20, 250, 480], [300, 100, 120, 200], [0, 0, 200, 200]]
    rec = _Recorder(est.model)
    PoseEstimator(exp, device='cpu', opts=FAST, model=rec, batch_size=2)(astronaut, boxes=boxes)
    assert rec.calls == [(2, None, True), (1, None, True)]     # MODEL.CHANNELS_LAST is on in the presets
    rec = _Recorder(est.model)
    PoseEstimator(exp, device='cpu', opts=FAST + ['TEST.AMP', 'bf16', 'MODEL.CHANNELS_LAST', 'False'],
                  model=rec)(astronaut, boxes=boxes)
    assert rec.calls == [(3, torch.bfloat16, False)]           # TEST.IMS_PER_GPU (32) by default


def test_weights_from_url(rsn, astronaut, http_root, one_thread):
    """Weights from a URL (served from 127.0.0.1 by the test; the download cache goes to tmp_path)."""
    import shutil
    exp, weights, est = rsn
    root, base = http_root
    shutil.copy(weights, root / 'rsn18.pth')
    remote = PoseEstimator(exp, base + 'rsn18.pth', device='cpu', opts=FAST)
    boxes = [[100, 20, 250, 480]]
    _same(remote(astronaut, boxes=boxes), est(astronaut, boxes=boxes))
