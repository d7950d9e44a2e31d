"""``python -m cvpack.demo EXP_DIR --weights W --input PATH``: draw an exp's keypoints on images or a video.

PATH is an image, a folder of images or a video file (OpenCV: mp4, avi, ...); ``--webcam N`` reads camera N.
Person boxes: ``--detector EXP --detector-weights W`` (a GCPose / Keypoint R-CNN exp), ``--det-json FILE`` (COCO
detection results, matched by file name or numeric file stem), or ``--whole-image`` (one person per image, the
default when nothing else is given). Whole-image exps (GCPose) need none. Writes into ``--out``: the drawn
images (PNG) or an mp4 with the video's fps and size, and ``predictions.json`` (COCO keypoint results with
``file_name``). Ends with one line of images (frames) per second, split into detector, pose and drawing time.
An image of a folder that cannot be read is skipped with a warning naming it; the others are drawn and the run
then exits with code 1, naming the skipped files. Bad input (a missing path, a bad weights file, a video or camera
that gives no frame at all) exits 2, one line.
"""
import contextlib
import json
import logging
import os
import os.path as osp
import sys
import time

import cv2

from .apis import PoseEstimator
from .apis.inputs import ImageInput, image_id_from_name
from .data.io import ImageReadError, read_image
from .tools._cli import OneLineParser, die
from .vis import draw_skeleton, save_png

__all__ = ['main', 'IMAGE_EXTS', 'VIDEO_EXTS']

logger = logging.getLogger('cvpack.demo')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.m4v', '.mpg', '.mpeg', '.webm')
MAX_BAD_FRAMES_IN_A_ROW = 25   # then the stream is taken as ended (a broken tail, or a camera gone)


class DemoError(Exception):
    """Bad input of the demo (message names it); printed without a traceback."""


def parser():
    p = OneLineParser(prog='python -m cvpack.demo', description=__doc__.split('\n\n')[0])
    p.add_argument('exp_dir', help='exp folder (config.py + network.py)')
    p.add_argument('--weights', default=None, help="checkpoint path or URL (default: what the exp's test.py loads)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--input', help='an image, a folder of images or a video file')
    src.add_argument('--webcam', type=int, metavar='N', help='read camera N')
    p.add_argument('--out', default='demo_out', help='output folder (default demo_out)')
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument('--detector', metavar='EXP_DIR', help='person detector exp (GCPose / Keypoint R-CNN)')
    boxes.add_argument('--det-json', metavar='FILE', help='COCO detection results (image_id or file_name keyed)')
    boxes.add_argument('--whole-image', action='store_true', help='the whole image is one person box')
    p.add_argument('--detector-weights', metavar='W', help='weights of --detector')
    p.add_argument('--detector-opts', nargs='+', default=[], metavar='KEY VALUE', help='overrides of --detector')
    p.add_argument('--box-thresh', type=float, default=0.5, help='detector boxes below it are dropped (0.5)')
    p.add_argument('--device', default='auto', help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1' ...")
    p.add_argument('--kpt-thresh', type=float, default=0.3, help='joints with a lower score are not drawn (0.3)')
    p.add_argument('--draw-boxes', action='store_true', help='draw the person boxes too')
    p.add_argument('--batch-size', type=int, default=None, help='crops per forward (default TEST.IMS_PER_GPU)')
    p.add_argument('--show', action='store_true', help='show the drawn frames in a window (q quits)')
    p.add_argument('--opts', nargs='+', default=[], metavar='KEY VALUE', help='config overrides of the exp')
    return p


def _images_of(path):
    """The image files of ``path`` (one file, or a folder's files with an image extension, sorted)."""
    if osp.isdir(path):
        files = sorted(osp.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise DemoError('input folder %s has no image files (%s)' % (path, ', '.join(IMAGE_EXTS)))
        return files
    return [path]


def open_video(source):
    """cv2.VideoCapture of a file or camera index; DemoError naming it when it does not open."""
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        what = 'camera %d' % source if isinstance(source, int) else 'video file %s' % source
        raise DemoError('cannot open %s (missing, not a video, or no OpenCV backend for it)' % what)
    return cap


def video_frames(cap, name, stats):
    """Yield (index, BGR frame) until the stream ends; an unreadable frame before the end is skipped and
    counted in ``stats['bad_frames']`` (the position still advances, so frame indices stay the video's)."""
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    index, bad_in_a_row = 0, 0
    while True:
        ok, frame = cap.read()
        if ok and frame is not None:
            bad_in_a_row = 0
            yield index, frame
        else:
            if (total and index >= total) or not total:
                return
            bad_in_a_row += 1
            stats['bad_frames'] += 1
            if bad_in_a_row >= MAX_BAD_FRAMES_IN_A_ROW:
                logger.warning('%s: %d unreadable frames in a row at frame %d of %d: stopping', name,
                               bad_in_a_row, index, total)
                return
        index += 1


def draw(image_bgr, people, meta, kpt_thresh, boxes=False):
    """Skeletons (and boxes) of ``people`` on a copy of the BGR image; colours from the dataset metadata."""
    out = draw_skeleton(image_bgr, [{'keypoints': p.keypoints} for p in people], meta, kp_thresh=kpt_thresh)
    if boxes:
        for p in people:
            if p.box is not None:
                x, y, w, h = (int(round(v)) for v in p.box)
                cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 255), 1, cv2.LINE_AA)
    return out


def _estimator(args):
    if args.detector and not args.detector_weights:
        raise DemoError('--detector needs --detector-weights')
    detector = (args.detector, args.detector_weights, args.detector_opts) if args.detector else None
    return PoseEstimator(args.exp_dir, args.weights, device=args.device, detector=detector, opts=args.opts,
                         batch_size=args.batch_size, box_thresh=args.box_thresh)


class _Run:
    """Predict, draw, write and time one stream of images or frames."""

    def __init__(self, est, args):
        self.est, self.args, self.results, self.draw_time, self.count = est, args, [], 0.0, 0
        self.skipped = []   # image files that could not be read (a folder's run goes on without them)
        self.box_kw = {'det_json': args.det_json} if args.det_json else {'whole_image': True} \
            if args.whole_image else {}
        if args.det_json:
            from .apis import DetectionFile
            self.box_kw['det_json'] = DetectionFile(args.det_json)   # read once

    def one(self, image, name, image_id):
        """people of ``image`` (a path or a BGR array), the drawn BGR image; records the COCO results.

        A file is read here, once, and that array is what the predictor sees and what is drawn on: a second
        read could differ (cv2.imread turns a JPEG by its EXIF orientation tag, the predictor's read_image
        keeps the stored pixels, as the datasets' annotations need), and the skeleton would land rotated."""
        path = image if isinstance(image, str) else None
        bgr = read_image(path) if path else image
        # --det-json entries match a file by name or numeric stem, a video frame by its index; ``image_id`` of a
        # file without a numeric stem is its position in the folder, which must not pick another image's boxes
        match_id = image_id_from_name(path) if path else image_id
        people = self.est(ImageInput(bgr, path or name, match_id), color='bgr', **self.box_kw)
        t = time.perf_counter()
        drawn = draw(bgr, people, self.est.meta, self.args.kpt_thresh, self.args.draw_boxes)
        self.draw_time += time.perf_counter() - t
        self.results.extend(p.to_coco(image_id, file_name=name) for p in people)
        self.count += 1
        if self.args.show:
            cv2.imshow('cvpack.demo', drawn)
            if cv2.waitKey(1) & 0xFF == ord('q'):
                raise KeyboardInterrupt
        return drawn

    def summary(self, unit, elapsed):
        det, pose = self.est.timing['detector'], self.est.timing['pose']
        rate = self.count / elapsed if elapsed > 0 else float('nan')
        return ('%d %s in %.2f s: %.2f %s/s (detector %.2f s, pose %.2f s, drawing %.2f s)'
                % (self.count, unit, elapsed, rate, unit, det, pose, self.draw_time))


def run_images(run, files, out, skip_unreadable=False):
    """Predict, draw and write each file. An unreadable or corrupt image is skipped with a warning naming it
    and listed in ``run.skipped`` when ``skip_unreadable`` (a folder: the others are still worth drawing), else
    its ImageReadError ends the run."""
    from tqdm import tqdm
    for n, path in enumerate(tqdm(files, desc='images', unit='img', dynamic_ncols=True)):
        name = osp.basename(path)
        image_id = image_id_from_name(name)
        try:
            drawn = run.one(path, name, n if image_id is None else image_id)
        except ImageReadError as e:
            if not skip_unreadable:
                raise
            logger.warning('skipped: %s', e)
            run.skipped.append(path)
            continue
        t = time.perf_counter()
        save_png(osp.join(out, osp.splitext(name)[0] + '.png'), drawn)
        run.draw_time += time.perf_counter() - t


def run_video(run, source, out):
    from tqdm import tqdm
    name = 'webcam%d' % source if isinstance(source, int) else osp.basename(source)
    cap = open_video(source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
    path = osp.join(out, osp.splitext(name)[0] + '.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, size)
    if not writer.isOpened():
        raise DemoError('cannot write video %s (no mp4v encoder in this OpenCV build?)' % path)
    stats, first = {'bad_frames': 0}, run.count
    try:
        for index, frame in tqdm(video_frames(cap, name, stats), desc=name, total=total, unit='frame',
                                 dynamic_ncols=True):
            drawn = run.one(frame, '%s#%d' % (name, index), index)
            t = time.perf_counter()
            writer.write(drawn)
            run.draw_time += time.perf_counter() - t
    finally:
        cap.release()
        writer.release()
    if run.count == first:   # not one frame: an error, not "0 frames" with exit 0 and an empty mp4
        with contextlib.suppress(FileNotFoundError):   # (a backend may not have created it)
            os.remove(path)
        raise DemoError('no frame could be read from %s (%d unreadable): an empty or damaged video, or a camera '
                        'that sends nothing' % ('camera %d' % source if isinstance(source, int) else source,
                                                 stats['bad_frames']))
    if stats['bad_frames']:
        logger.warning('%s: skipped %d unreadable frames', name, stats['bad_frames'])


def main(argv=None):
    """Run the demo; returns the summary line (also printed). Bad input exits 2 with one line naming it; when
    images of a folder could not be read, the others are drawn and the run ends with exit code 1, naming them."""
    args = parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s: %(message)s')
    try:
        if args.input is not None and not osp.exists(args.input):
            raise DemoError('input not found: %s' % args.input)
        est = _estimator(args)
        os.makedirs(args.out, exist_ok=True)
        run = _Run(est, args)
        start = time.perf_counter()
        video = args.webcam is not None or (osp.isfile(args.input) and args.input.lower().endswith(VIDEO_EXTS))
        unit = 'frames' if video else 'images'
        try:
            if video:
                run_video(run, args.webcam if args.webcam is not None else args.input, args.out)
            else:
                run_images(run, _images_of(args.input), args.out, skip_unreadable=osp.isdir(args.input))
        except KeyboardInterrupt:   # q in the --show window, or Ctrl-C: keep what was predicted
            logger.warning('stopped after %d %s', run.count, unit)
        elapsed = time.perf_counter() - start
    except (DemoError, OSError, ValueError, KeyError, RuntimeError) as e:   # RuntimeError: CheckpointError
        die('python -m cvpack.demo: error: %s' % (e.args[0] if isinstance(e, KeyError) and e.args else e))
    with open(osp.join(args.out, 'predictions.json'), 'w') as f:
        json.dump(run.results, f)
    line = run.summary(unit, elapsed)
    print(line)
    if args.show:
        cv2.destroyAllWindows()
    if run.skipped:
        die('python -m cvpack.demo: error: %d of %d images could not be read and were skipped: %s'
            % (len(run.skipped), len(run.skipped) + run.count, ', '.join(run.skipped)), code=1)
    return line


if __name__ == '__main__':
    main(sys.argv[1:])
