"""python -m cvpack.demo: images, folders, videos (frames and size kept), predictions json, errors naming the input."""
import json
import logging
import os.path as osp
import shutil
import struct

import cv2
import numpy as np
import pytest

from cvpack import demo
from tests.apis.helpers import KPRCNN, RSN18, TINY_DETECTION, exp_path, random_weights

FAST = ['--opts', 'TEST.FLIP', 'False']


@pytest.fixture(scope='module')
def rsn(tmp_path_factory, repo_root):
    exp = exp_path(repo_root, RSN18)
    return exp, random_weights(exp, tmp_path_factory.mktemp('w') / 'rsn18.pth')


@pytest.fixture(scope='module')
def kprcnn(tmp_path_factory, repo_root):
    exp = exp_path(repo_root, KPRCNN)
    return exp, random_weights(exp, tmp_path_factory.mktemp('w') / 'kprcnn.pth', TINY_DETECTION)


def test_folder_with_det_json_loads_in_pycocotools(rsn, coco_subset, tmp_path, one_thread):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    exp, weights = rsn
    folder = tmp_path / 'images'
    folder.mkdir()
    names = ['000000000785.jpg', '000000397133.jpg']   # 785: 22 detections, 2 with score >= 0.1; 397133: none
    for n in names:
        shutil.copy(osp.join(coco_subset, 'images', 'val2017', n), folder / n)
    det = osp.join(coco_subset, 'det_json', 'COCO_val2017_detections_AP_H_56_person.json')
    out = tmp_path / 'out'
    line = demo.main([exp, '--weights', weights, '--input', str(folder), '--out', str(out), '--det-json', det,
                      '--device', 'cpu', '--draw-boxes'] + FAST + ['TEST.DET_SCORE_THRESH', '0.1'])
    assert line.startswith('2 images in ') and 'detector 0.00 s' in line and 'drawing' in line
    for n in names:
        drawn = cv2.imread(str(out / n.replace('.jpg', '.png')))
        assert drawn.shape == cv2.imread(str(folder / n)).shape
    results = json.loads((out / 'predictions.json').read_text())
    with open(det) as f:
        boxes = sorted(d['bbox'] for d in json.load(f) if d['image_id'] == 785 and d['score'] >= 0.1)
    assert len(results) == len(boxes) == 2                  # TEST.NMS 'none': one person per box
    for r, b in zip(sorted(results, key=lambda r: r['bbox']), boxes):
        assert r['bbox'] == pytest.approx(b, rel=1e-6)      # boxes are float32 in the crop samples
    assert all(r['file_name'] == names[0] and r['image_id'] == 785 for r in results)
    gt = COCO(osp.join(coco_subset, 'annotations', 'person_keypoints_val2017.json'))
    ev = COCOeval(gt, gt.loadRes(str(out / 'predictions.json')), 'keypoints')
    ev.params.imgIds = [785]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0.0 <= ev.stats[0] <= 1.0


def _write_video(path, frames, fps=12.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def test_video_in_and_out(rsn, repo_root, tmp_path, one_thread):
    exp, weights = rsn
    img = cv2.resize(cv2.imread(osp.join(repo_root, 'dataset', 'demo', 'astronaut.png')), (160, 120))
    frames = [np.roll(img, 8 * i, axis=1) for i in range(4)]
    video = tmp_path / 'clip.mp4'
    _write_video(video, frames)
    out = tmp_path / 'out'
    line = demo.main([exp, '--weights', weights, '--input', str(video), '--out', str(out), '--whole-image',
                      '--device', 'cpu'] + FAST)
    assert line.startswith('4 frames in ') and 'frames/s' in line
    cap = cv2.VideoCapture(str(out / 'clip.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (160, 120)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4
    results = json.loads((out / 'predictions.json').read_text())
    assert [r['file_name'] for r in results] == ['clip.mp4#%d' % i for i in range(4)]
    assert [r['image_id'] for r in results] == [0, 1, 2, 3] and all(r['bbox'] == [0, 0, 160, 120] for r in results)


def test_detector_and_whole_image_model(rsn, kprcnn, repo_root, tmp_path, one_thread):
    exp, weights = rsn
    det_exp, det_weights = kprcnn
    image = osp.join(repo_root, 'dataset', 'demo', 'astronaut.png')
    line = demo.main([exp, '--weights', weights, '--input', image, '--out', str(tmp_path / 'a'), '--device', 'cpu',
                      '--detector', det_exp, '--detector-weights', det_weights, '--box-thresh', '0',
                      '--detector-opts'] + TINY_DETECTION + FAST)
    assert line.startswith('1 images in ') and 'detector 0.00 s' not in line
    with_detector = json.loads((tmp_path / 'a' / 'predictions.json').read_text())
    demo.main([det_exp, '--weights', det_weights, '--input', image, '--out', str(tmp_path / 'b'), '--device', 'cpu',
               '--opts'] + TINY_DETECTION)
    detections = json.loads((tmp_path / 'b' / 'predictions.json').read_text())
    assert len(with_detector) == len(detections) >= 1      # one pose per detected box (all kept: --box-thresh 0)
    assert sorted(r['bbox'] for r in with_detector) == sorted(r['bbox'] for r in detections)
    assert all(len(r['keypoints']) == 51 and r['file_name'] == 'astronaut.png' for r in detections)


class _FlakyCapture:
    """cv2.VideoCapture stand-in: 4 frames, the second one unreadable."""

    def __init__(self, source):
        self.frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(4)]
        self.pos = 0

    def isOpened(self):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 10.0, cv2.CAP_PROP_FRAME_WIDTH: 64, cv2.CAP_PROP_FRAME_HEIGHT: 48,
                cv2.CAP_PROP_FRAME_COUNT: 4}.get(prop, 0)

    def read(self):
        self.pos += 1
        if self.pos > 4 or self.pos == 2:
            return False, None
        return True, self.frames[self.pos - 1]

    def release(self):
        pass


def test_unreadable_frame_is_skipped_and_counted(rsn, tmp_path, monkeypatch, log_capture, one_thread):
    exp, weights = rsn
    video = tmp_path / 'flaky.avi'
    video.write_bytes(b'x')
    monkeypatch.setattr(demo.cv2, 'VideoCapture', _FlakyCapture)
    with log_capture.at_level(logging.WARNING, logger='cvpack.demo'):
        line = demo.main([exp, '--weights', weights, '--input', str(video), '--out', str(tmp_path / 'out'),
                          '--whole-image', '--device', 'cpu'] + FAST)
    assert line.startswith('3 frames in ')
    assert 'flaky.avi: skipped 1 unreadable frames' in log_capture.text
    results = json.loads((tmp_path / 'out' / 'predictions.json').read_text())
    assert [r['image_id'] for r in results] == [0, 2, 3]     # frame numbers stay the video's


def test_errors_name_the_input(rsn, kprcnn, repo_root, tmp_path):
    exp, weights = rsn
    _, det_weights = kprcnn
    out = ['--out', str(tmp_path / 'out'), '--device', 'cpu']
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8 not a jpeg')
    with pytest.raises(SystemExit, match='broken.jpg'):
        demo.main([exp, '--weights', weights, '--input', str(bad)] + out)
    folder = tmp_path / 'folder'
    folder.mkdir()
    shutil.copy(osp.join(repo_root, 'dataset', 'demo', 'astronaut.png'), folder / 'a.png')
    video = tmp_path / 'garbage.mp4'
    video.write_bytes(b'not a video at all')
    with pytest.raises(SystemExit, match='cannot open video file .*garbage.mp4'):
        demo.main([exp, '--weights', weights, '--input', str(video)] + out)
    with pytest.raises(SystemExit, match='kprcnn.pth: does not match the exp .*RSN18.coco'):
        demo.main([exp, '--weights', det_weights, '--input', str(folder)] + out)
    with pytest.raises(SystemExit, match='input not found: .*nothere'):
        demo.main([exp, '--weights', weights, '--input', str(tmp_path / 'nothere')] + out)
    with pytest.raises(SystemExit, match='--detector needs --detector-weights'):
        demo.main([exp, '--weights', weights, '--input', str(folder), '--detector', exp] + out)


def test_webcam(rsn, tmp_path, monkeypatch, one_thread):
    exp, weights = rsn
    monkeypatch.setattr(demo.cv2, 'VideoCapture', _FlakyCapture)
    line = demo.main([exp, '--weights', weights, '--webcam', '0', '--out', str(tmp_path), '--whole-image',
                      '--device', 'cpu'] + FAST)
    assert line.startswith('3 frames in ') and (tmp_path / 'webcam0.mp4').is_file()
    results = json.loads((tmp_path / 'predictions.json').read_text())
    assert [r['file_name'] for r in results] == ['webcam0#0', 'webcam0#2', 'webcam0#3']


def _jpeg_with_exif_orientation(path, image, orientation=6):
    """Write ``image`` as a JPEG whose EXIF APP1 segment (made here byte by byte: 'Exif', a big-endian TIFF
    header, one IFD entry Orientation = SHORT ``orientation``) tells viewers to turn it (6: 90 degrees clockwise)."""
    ok, buf = cv2.imencode('.jpg', image)
    assert ok
    ifd = struct.pack('>H', 1) + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0) + struct.pack('>I', 0)
    app1 = b'Exif\x00\x00' + b'MM\x00\x2a' + struct.pack('>I', 8) + ifd
    jpg = buf.tobytes()
    path.write_bytes(jpg[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + jpg[2:])


def test_exif_rotated_jpeg_is_drawn_on_the_pixels_predicted_on(rsn, repo_root, tmp_path, one_thread):
    exp, weights = rsn
    stored = cv2.resize(cv2.imread(osp.join(repo_root, 'dataset', 'demo', 'astronaut.png')), (96, 64))
    path = tmp_path / 'turned.jpg'
    _jpeg_with_exif_orientation(path, stored)
    assert cv2.imread(str(path)).shape == (96, 64, 3)          # OpenCV's plain read applies the tag
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert pixels.shape == (64, 96, 3)                        # the stored pixels, what the predictor reads
    out = tmp_path / 'out'
    demo.main([exp, '--weights', weights, '--input', str(path), '--out', str(out), '--whole-image',
               '--device', 'cpu', '--kpt-thresh', '2'] + FAST)   # (no joint scores 2: nothing drawn over)
    results = json.loads((out / 'predictions.json').read_text())
    assert [r['bbox'] for r in results] == [[0, 0, 96, 64]]   # predicted on the stored 96x64 pixels
    drawn = cv2.imread(str(out / 'turned.png'))
    assert drawn.shape == (64, 96, 3) and np.array_equal(drawn, pixels)


def _small_images(repo_root, tmp_path, names):
    """tmp_path/folder with the demo astronaut at 96x64 under each of ``names``."""
    folder = tmp_path / 'folder'
    folder.mkdir()
    small = cv2.resize(cv2.imread(osp.join(repo_root, 'dataset', 'demo', 'astronaut.png')), (96, 64))
    for name in names:
        cv2.imwrite(str(folder / name), small)
    return folder


def test_folder_with_an_unreadable_image_draws_the_rest_and_exits_1(rsn, repo_root, tmp_path, log_capture,
                                                                   capsys, one_thread):
    exp, weights = rsn
    folder = _small_images(repo_root, tmp_path, ('a.png', 'c.png'))
    (folder / 'b.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    out = tmp_path / 'out'
    with log_capture.at_level(logging.WARNING, logger='cvpack.demo'), pytest.raises(SystemExit) as exc:
        demo.main([exp, '--weights', weights, '--input', str(folder), '--out', str(out), '--whole-image',
                   '--device', 'cpu'] + FAST)
    assert exc.value.code == 1
    assert 'skipped: cannot decode image file %s' % (folder / 'b.jpg') in log_capture.text
    last = capsys.readouterr().err.split('\n')[-2]     # (tqdm's progress bar is on stderr before it)
    assert last == 'python -m cvpack.demo: error: 1 of 3 images could not be read and were skipped: %s' % (
        folder / 'b.jpg')
    assert sorted(p.name for p in out.iterdir()) == ['a.png', 'c.png', 'predictions.json']
    assert [r['file_name'] for r in json.loads((out / 'predictions.json').read_text())] == ['a.png', 'c.png']


def test_missing_input_is_exit_2_one_line(rsn, tmp_path, capsys):
    exp, weights = rsn
    with pytest.raises(SystemExit) as exc:
        demo.main([exp, '--weights', weights, '--input', str(tmp_path / 'nothere.jpg'), '--out', str(tmp_path / 'o')])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err == 'python -m cvpack.demo: error: input not found: %s\n' % (
        tmp_path / 'nothere.jpg')
    assert not (tmp_path / 'o').exists()


def test_video_frames_with_det_json_by_frame_index(rsn, repo_root, tmp_path, one_thread):
    """Frames are arrays the demo read: matched to detections by frame index (their image id)."""
    exp, weights = rsn
    img = cv2.resize(cv2.imread(osp.join(repo_root, 'dataset', 'demo', 'astronaut.png')), (160, 120))
    video = tmp_path / 'clip.mp4'
    _write_video(video, [img, img])
    boxes = {0: [10.0, 5.0, 60.0, 100.0], 1: [50.0, 20.0, 70.0, 90.0]}
    det = tmp_path / 'dets.json'
    det.write_text(json.dumps([{'image_id': i, 'category_id': 1, 'bbox': b, 'score': 0.9} for i, b in boxes.items()]))
    out = tmp_path / 'out'
    demo.main([exp, '--weights', weights, '--input', str(video), '--out', str(out), '--det-json', str(det),
               '--device', 'cpu'] + FAST)
    results = json.loads((out / 'predictions.json').read_text())
    assert [(r['image_id'], r['bbox'], r['file_name']) for r in results] == [
        (0, boxes[0], 'clip.mp4#0'), (1, boxes[1], 'clip.mp4#1')]


class _DeadCapture(_FlakyCapture):
    """A capture that opens but gives no frame: a camera that sends nothing (frame count 0), or a video whose
    3 frames are all unreadable."""
    frame_count = 0

    def get(self, prop):
        return self.frame_count if prop == cv2.CAP_PROP_FRAME_COUNT else super().get(prop)

    def read(self):
        return False, None


def test_a_stream_without_a_single_frame_is_an_error(rsn, tmp_path, monkeypatch, capsys):
    """It printed '0 frames in 0.00 s', exit 0, and left an empty mp4 and predictions.json []."""
    exp, weights = rsn
    video = tmp_path / 'dead.avi'
    video.write_bytes(b'x')
    monkeypatch.setattr(demo.cv2, 'VideoCapture', _DeadCapture)
    for count, argv, named in ((0, ['--webcam', '1'], 'camera 1 (0 unreadable)'),
                               (3, ['--input', str(video)], '%s (3 unreadable)' % video)):
        _DeadCapture.frame_count = count
        out = tmp_path / ('out%d' % count)
        with pytest.raises(SystemExit) as exc:
            demo.main([exp, '--weights', weights, '--out', str(out), '--whole-image', '--device', 'cpu'] + argv + FAST)
        assert exc.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            'python -m cvpack.demo: error: no frame could be read from %s: an empty or damaged video, or a camera '
            'that sends nothing' % named)
        assert list(out.iterdir()) == []


def test_det_json_never_matches_a_file_by_its_position_in_the_folder(rsn, repo_root, tmp_path, log_capture,
                                                                      one_thread):
    """Files without a numeric stem get their position as image id in predictions.json; that id also matched
    --det-json entries, so a.png silently took the boxes of image id 0. Only the file name or numeric stem match."""
    exp, weights = rsn
    folder = _small_images(repo_root, tmp_path, ('a.png', 'b.png'))
    det = tmp_path / 'dets.json'
    det.write_text(json.dumps([{'image_id': 0, 'category_id': 1, 'bbox': [1.0, 2.0, 30.0, 40.0], 'score': 0.9},
                               {'image_id': 1, 'category_id': 1, 'bbox': [3.0, 4.0, 30.0, 40.0], 'score': 0.9},
                               {'file_name': 'b.png', 'category_id': 1, 'bbox': [5.0, 6.0, 50.0, 50.0], 'score': 0.8}]))
    out = tmp_path / 'out'
    with log_capture.at_level(logging.WARNING, logger='cvpack'):
        demo.main([exp, '--weights', weights, '--input', str(folder), '--out', str(out), '--det-json', str(det),
                   '--device', 'cpu'] + FAST)
    results = json.loads((out / 'predictions.json').read_text())
    assert [(r['file_name'], r['image_id'], r['bbox']) for r in results] == [('b.png', 1, [5.0, 6.0, 50.0, 50.0])]
    assert 'no detections for %s' % (folder / 'a.png') in log_capture.text
