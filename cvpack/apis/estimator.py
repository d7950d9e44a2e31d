"""``PoseEstimator``: any exp of the repo on your own images, with the same predictor code as ``test.py``.

Top-down exps (megvii / simple_baselines / cpn pipelines) crop each person box exactly as test.py crops a
detection (``box_record`` of the exp's dataset class), run :func:`cvpack.inference.runner.predict_batches`
with the exp's predictor (flip test, decoder, map back, rescoring), then ``cfg.TEST.NMS`` per image
(:func:`cvpack.evaluation.build.apply_test_nms`). Whole-image exps (GCPose, Keypoint R-CNN: pipeline
'detection') are estimators themselves and can also serve as the person detector of a top-down exp.
Coordinates are COCO results' (pixel indices, the frame of ``results.json``).
"""
import logging
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch

from ..data import TOP_DOWN_PIPELINES, build_dataset, collate
from ..data.meta_file import dataset_meta
from ..data.validate import box_is_degenerate, number, warn_skipped
from ..decode.heatmap import NonFiniteHeatmaps
from ..evaluation.build import apply_test_nms
from ..evaluation.coco import instances_to_coco_results
from ..inference import build_predictor
from ..inference.runner import predict_batches
from .inputs import DetectionFile, check_image_id, load_images, parse_boxes, warn_outside

__all__ = ['PoseEstimator', 'Person', 'WeightsMismatchError', 'resolve_device']

from ..weights import WeightsMismatchError

logger = logging.getLogger(__name__)


@dataclass
class Person:
    """One person: ``keypoints`` (K, 3) float64 (x, y image pixels, score), ``score`` (instance score, as in
    results.json), ``box`` (4,) xywh image pixels (the crop box of a top-down exp: the caller's, detected, or
    the whole image; the detected box of a whole-image model), ``box_score`` (the box's detection score) and
    ``keypoint_names`` (the K names of the dataset, in keypoint order)."""
    keypoints: np.ndarray
    score: float
    box: Optional[np.ndarray]
    box_score: float
    keypoint_names: Tuple[str, ...] = field(repr=False, default=())

    def to_coco(self, image_id, **extra):
        """A COCO keypoint results record {image_id, category_id 1, keypoints [x, y, s] * K, score, bbox}
        (``extra`` items are added, e.g. file_name). ``image_id``: an int or a str, as the ground truth's ids
        (a numpy int becomes an int; a float, boolean or None is refused: pycocotools would match it to no
        image, or True to image 1). An ``extra`` key that would overwrite a field of the record is refused."""
        image_id = check_image_id(image_id, 'Person.to_coco')
        rec = instances_to_coco_results([{'image_id': image_id, 'keypoints': self.keypoints, 'score': self.score}])[0]
        if self.box is not None:
            rec['bbox'] = [float(v) for v in self.box]
        clash = sorted(set(extra) & (set(rec) | {'bbox'}))
        if clash:
            raise ValueError('Person.to_coco: extra field(s) %s would overwrite the record\'s own' % ', '.join(clash))
        rec.update(extra)
        return rec


def resolve_device(device):
    """'auto' -> CUDA when available, else CPU; any torch device string otherwise."""
    if device in (None, 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(device)


def _build_model(exp_dir, weights, opts, device):
    """The exp's (cfg, model) with ``weights`` loaded strictly, in eval mode on ``device``.

    The ONE place where the API reads weights, through the same path as test.py (``cvpack.weights``): any known
    format (ours, the authors', mmpose's, an exp's project formats such as Detectron2's), from a path or URL;
    the settings the weights need (preprocessing, architecture options) are applied to the cfg before the model
    is built. ``weights`` None: test.py's choice (:func:`cvpack.engine.tester.resolve_test_checkpoint`:
    OUTPUT_DIR/iter-last.pth, else MODEL.WEIGHT).
    """
    from ..engine.tester import resolve_test_checkpoint
    from ..exp import load_exp
    from ..weights import build_model_with_weights
    source = weights if weights else resolve_test_checkpoint(load_exp(exp_dir, opts, build=False)[0], log=logger)
    try:
        cfg, model, _ = build_model_with_weights(exp_dir, source, opts, log=logger)
    except WeightsMismatchError as e:
        raise WeightsMismatchError(source, 'does not match the exp %s: %s' % (exp_dir, e.reason)) from None
    return cfg, model.to(device).eval()


def _onnx_model(exp_dir, path, opts, device):
    """(cfg, :class:`OnnxHeatmapModel`) of an exported file: the config settings of the weights it was exported
    from (its metadata) are applied to the exp's cfg, and a file whose keypoint count or input size differ from
    the exp's is refused (another exp's export would be decoded with the wrong skeleton or crop)."""
    from ..exp import load_exp
    from ..inference.onnx import OnnxHeatmapModel
    from ..weights import apply_overrides
    model = OnnxHeatmapModel(path, device=device)
    cfg = apply_overrides(load_exp(exp_dir, opts, build=False)[0], model.cfg_overrides, path, logger)
    if cfg.DATASET.PIPELINE not in TOP_DOWN_PIPELINES:
        raise ValueError('%s: backend onnxruntime runs top-down exps; %s is a whole-image model' % (path, exp_dir))
    model.check_exp(osp.basename(osp.normpath(exp_dir)), dataset_meta(cfg).num_keypoints, cfg.INPUT_SHAPE, logger)
    return cfg, model


def _positive_int(value, name):
    """``value`` as an int >= 1 (ValueError naming ``name`` for 0, negatives, floats, booleans, strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError('%s must be a positive integer, got %r' % (name, value))
    return int(value)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class PoseEstimator:
    """Multi-person keypoints of images with the model of an exp (any project).

    Args:
        exp_dir: exp folder (config.py + network.py), e.g. 'projects/RSN/exps/RSN18.coco'.
        weights: checkpoint path or URL (None: what test.py would load).
        device: 'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1' ...
        detector: person boxes for a top-down exp: (exp_dir, weights) or (exp_dir, weights, opts) of a
            whole-image exp (GCPose, Keypoint R-CNN), or a whole-image PoseEstimator.
        opts: KEY VALUE config overrides of the exp (as test.py's command line).
        batch_size: crops per forward (default cfg.TEST.IMS_PER_GPU).
        box_thresh: detector boxes with a lower score are dropped (0.5, Detectron2 demo's threshold).
        detector_nms: IoU threshold of the detector's box NMS (MODEL.ROI_HEADS.NMS_THRESH_TEST), None: its cfg.
        det_score_thresh: detection-json boxes below it are dropped (None: the exp's TEST.DET_SCORE_THRESH,
            as test.py).
        model: an already built model object with the eval forward contract (images (N, 3, H, W) ->
            heatmaps (N, K, h, w); e.g. an ONNX Runtime wrapper) instead of building the exp's; weights unused.
        backend: 'torch' (default) or 'onnxruntime': ``weights`` is then an ONNX file written by
            ``python -m cvpack.tools.export`` (top-down exps; needs the optional onnxruntime), run by
            :class:`cvpack.inference.onnx.OnnxHeatmapModel` with the same pre- and post-processing; the config
            settings of the weights it was exported from (stored in the file) are applied.

    ``timing`` accumulates seconds spent in the detector and the pose model (``'detector'``, ``'pose'``).
    """

    def __init__(self, exp_dir, weights=None, device='auto', detector=None, opts=None, batch_size=None,
                 box_thresh=0.5, detector_nms=None, det_score_thresh=None, model=None, backend='torch'):
        self.device = resolve_device(device)
        if backend not in ('torch', 'onnxruntime'):
            raise ValueError("backend must be 'torch' or 'onnxruntime', got %r" % (backend,))
        if backend == 'onnxruntime':
            if not weights or model is not None:
                raise ValueError("backend='onnxruntime' needs weights=<the exported .onnx file> (and no model=)")
            self.cfg, self.model = _onnx_model(exp_dir, weights, opts, device)
        elif model is None:
            if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).lower().endswith('.onnx'):
                raise ValueError("%s is an ONNX file: the torch backend reads checkpoints; use "
                                 "backend='onnxruntime' to run it" % weights)
            self.cfg, self.model = _build_model(exp_dir, weights, opts, self.device)
            self.model = self._prepare(self.model)
        else:
            from ..exp import load_exp
            self.cfg, _ = load_exp(exp_dir, opts, build=False)
            self.model = model
        self.exp_dir = exp_dir
        # not a top-down pipeline: a whole-image model (GCPose's 'detection'), whose predictor finds the people
        self.whole_image_model = self.cfg.DATASET.PIPELINE not in TOP_DOWN_PIPELINES
        self.predictor = build_predictor(self.cfg)
        self.meta = dataset_meta(self.cfg)
        self.keypoint_names = tuple(self.meta.keypoint_names)
        self.rgb = bool(self.cfg.DATASET.COLOR_RGB)
        self.batch_size = _positive_int(self.cfg.TEST.IMS_PER_GPU if batch_size is None else batch_size, 'batch_size')
        self.box_thresh = number(box_thresh, 'PoseEstimator', 'box_thresh')
        if det_score_thresh is None and not self.whole_image_model:   # (whole-image models take no det_json)
            det_score_thresh = self.cfg.TEST.DET_SCORE_THRESH
        self.det_score_thresh = None if det_score_thresh is None else \
            number(det_score_thresh, 'PoseEstimator', 'det_score_thresh')
        self.dataset = build_dataset(self.cfg, 'val', records=[])   # crops exactly as test.py's val set
        self.detector = self._detector(detector, detector_nms)
        self.timing = {'detector': 0.0, 'pose': 0.0}

    def _prepare(self, model):
        """MODEL.CHANNELS_LAST and TEST.COMPILE, as test.py (TEST.AMP is applied per batch)."""
        if self.cfg.MODEL.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        if self.cfg.TEST.COMPILE:
            from ..inference.compile import maybe_compile
            model = maybe_compile(model, self.cfg, logger)
        return model

    def _detector(self, detector, nms):
        if detector is None:
            return None
        if self.whole_image_model:
            raise ValueError('%s is a whole-image model: it finds people itself, a detector is not used' % self.exp_dir)
        if not isinstance(detector, PoseEstimator):
            if not isinstance(detector, (list, tuple)) or len(detector) not in (2, 3):
                raise ValueError('detector must be (exp_dir, weights), (exp_dir, weights, opts) or a PoseEstimator, '
                                 'got %r' % (detector,))
            opts = list(detector[2]) if len(detector) == 3 else []
            if nms is not None:
                opts += ['MODEL.ROI_HEADS.NMS_THRESH_TEST', repr(float(nms))]
            detector = PoseEstimator(detector[0], detector[1], device=self.device, opts=opts)
        if not detector.whole_image_model:
            raise ValueError('detector %s is not a whole-image model (GCPose / Keypoint R-CNN exps are)'
                             % detector.exp_dir)
        return detector

    # ------------------------------------------------------------------ running
    def __call__(self, inputs, boxes=None, det_json=None, whole_image=False, color='bgr', image_ids=None):
        """People in one image or a list of images.

        Args:
            inputs: image path, (H, W, 3) uint8 array (channel order ``color``), :class:`ImageInput` (an array
                the caller read, with its file name), or a list of them.
            boxes: person boxes [[x, y, w, h(, score)], ...] (image pixels) for one image, or one such list per
                image for a list input. Not 4 or 5 finite numbers, or a negative width or height: an error
                naming the image and the box index; zero width or height: skipped with one warning.
            det_json: COCO detection-results file (path or :class:`DetectionFile`), matched by file name or
                image id (``image_ids``, else the numeric file stem), filtered as test.py filters TEST.DET_FILE
                (category 1, ``det_score_thresh``, degenerate boxes skipped with one warning).
            whole_image: one box = the whole image (the single-person fallback, also used when no other box
                source is given).
            color: 'bgr' (OpenCV) or 'rgb': the order of array inputs.
            image_ids: optional ids of the images, ints or strs (det_json matching; ``Person.to_coco``).
        Returns:
            a list of :class:`Person` (best score first) for one input, a list of such lists for a list.
            NaN/inf keypoints or scores from the model are a ValueError naming the images and boxes.
        """
        images, single = load_images(inputs, color, self.rgb, image_ids)
        if self.whole_image_model:
            if boxes is not None or det_json is not None or whole_image:
                raise ValueError('%s is a whole-image model: boxes, det_json and whole_image do not apply'
                                 % self.exp_dir)
            people = self._whole_image_people(images)
        else:
            people = self._top_down_people(images, self._boxes(images, boxes, det_json, whole_image, single))
        return people[0] if single else people

    def _boxes(self, images, boxes, det_json, whole_image, single):
        """Per image (xywh (B, 4), scores (B,)) from the one box source in use."""
        given = [n for n, v in (('boxes', boxes), ('det_json', det_json)) if v is not None]
        if len(given) > 1 or (given and whole_image):
            raise ValueError('give one box source, got %s' % ', '.join(given + ['whole_image'] * bool(whole_image)))
        if boxes is not None:
            per_image = [boxes] if single else list(boxes)
            if len(per_image) != len(images):
                raise ValueError('%d box lists for %d images' % (len(per_image), len(images)))
            return [parse_boxes(b, im.name, im.array.shape[:2]) for b, im in zip(per_image, images)]
        if det_json is not None:
            dets = det_json if isinstance(det_json, DetectionFile) else DetectionFile(det_json)
            return [self._detection_boxes(dets, im) for im in images]
        if self.detector is not None and not whole_image:
            return self._detect(images)
        return [(np.array([[0.0, 0.0, im.array.shape[1], im.array.shape[0]]]), np.ones(1)) for im in images]

    def _detection_boxes(self, dets, im):
        """(xywh, scores) of image ``im`` in detection file ``dets``, filtered as test.py filters a detection
        file (:func:`cvpack.data.coco.coco_det_records`): score below the threshold dropped, then degenerate
        boxes (w or h <= 0) skipped with one warning naming the detections."""
        found = dets.boxes_for(im)
        if found is None:
            logger.warning('%s: no detections for %s (image id %s)', dets.path, im.name, im.image_id)
        kept, degenerate = [], []
        for i, box, score in found or []:
            if score < self.det_score_thresh:
                continue
            if box_is_degenerate(box):
                degenerate.append('detection #%d bbox %s' % (i, box))
                continue
            kept.append((i, box, score))
        warn_skipped(logger, dets.path, 'detections of %s' % im.name, degenerate, len(degenerate),
                     'degenerate box: w or h <= 0')
        warn_outside('%s (%s)' % (dets.path, im.name), im.array.shape[:2], [(i, b) for i, b, _ in kept], 'detection')
        return (np.array([b for _, b, _ in kept], np.float64).reshape(-1, 4),
                np.array([s for _, _, s in kept], np.float64))

    def _detect(self, images):
        t = time.perf_counter()
        det = self.detector
        arrays = [im.array if det.rgb == self.rgb else np.ascontiguousarray(im.array[..., ::-1]) for im in images]
        people = det._whole_image_people(
            [type(im)(a, im.name, im.image_id) for im, a in zip(images, arrays)])
        out = []
        for found in people:
            found = [p for p in found if p.score >= self.box_thresh]
            out.append((np.array([p.box for p in found], np.float64).reshape(-1, 4),
                        np.array([p.score for p in found], np.float64)))
        _sync(self.device)
        self.timing['detector'] += time.perf_counter() - t
        return out

    def _run(self, records, images):
        """The predictor's instances for dataset records, in batches of ``batch_size`` (test.py's loop).

        A batch with NaN/inf heatmaps does not stop the call: the later batches run too, so that the error
        counts the bad people over the call (test.py's counts the failing batch) and names each image."""
        self.dataset.records = records
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, collate_fn=collate)
        instances, bad = [], []
        for batch in loader:
            try:
                instances.extend(predict_batches(self.model, [batch], self.predictor, self.cfg, self.device))
            except NonFiniteHeatmaps as e:   # the predictor's image ids are positions in ``images``
                if not hasattr(e, 'image_ids'):
                    raise
                bad.extend(zip(e.image_ids, e.boxes))
        if bad:
            raise ValueError(_non_finite_message(bad, records, images))
        return instances

    def _top_down_people(self, images, boxes):
        t = time.perf_counter()
        records = [self.dataset.box_record(box, score, n, image=im.array)
                   for n, (im, (xywh, scores)) in enumerate(zip(images, boxes)) for box, score in zip(xywh, scores)]
        instances = apply_test_nms(self.cfg, self._run(records, images)) if records else []
        _sync(self.device)
        self.timing['pose'] += time.perf_counter() - t
        return self._group(instances, images)

    def _whole_image_people(self, images):
        t = time.perf_counter()
        records = [self.dataset.image_record(im.array, n, im.name) for n, im in enumerate(images)]
        instances = self._run(records, images)
        _sync(self.device)
        self.timing['pose'] += time.perf_counter() - t
        return self._group(instances, images)

    def _group(self, instances, images):
        """Instances (image_id = position in ``images``) -> per image lists of :class:`Person`, best first.

        Keypoints or a score that are NaN/inf (a checkpoint with non-finite weights, an fp16 overflow under
        TEST.AMP) are an error naming the images and boxes: they would be drawn nowhere and written to JSON as
        NaN, which no JSON reader accepts."""
        bad = ['%s box %s' % (images[int(i['image_id'])].name, None if i.get('bbox') is None else
                              [round(float(v), 2) for v in i['bbox']])
               for i in instances if not (np.isfinite(np.asarray(i['keypoints'], np.float64)).all()
                                          and np.isfinite(float(i['score'])))]
        if bad:
            raise ValueError('the model gave NaN/inf keypoints or scores for %d of %d people (e.g. %s): non-finite '
                             'weights, or an fp16 overflow (TEST.AMP)?'
                             % (len(bad), len(instances), '; '.join(bad[:3])))
        people = [[] for _ in range(len(images))]
        for inst in instances:
            box = inst.get('bbox')
            people[int(inst['image_id'])].append(Person(
                keypoints=np.asarray(inst['keypoints'], np.float64), score=float(inst['score']),
                box=None if box is None else np.asarray(box, np.float64),
                box_score=float(inst.get('det_score', inst['score'])), keypoint_names=self.keypoint_names))
        for p in people:
            p.sort(key=lambda q: -q.score)
        return people


def _non_finite_message(bad, records, images):
    """The error for people (image position, box or None) with NaN/inf heatmaps: the count over the call's
    people, then each image with its own count and boxes (consistent with :func:`cvpack.inference.topdown._named`,
    which counts a batch)."""
    per_image = {}
    for i, box in bad:
        per_image.setdefault(int(i), []).append(box)
    totals = {}
    for rec in records:
        totals[int(rec['image_id'])] = totals.get(int(rec['image_id']), 0) + 1
    where = ['%s: %d of its %d people%s' % (
        images[i].name, len(boxes), totals.get(i, len(boxes)),
        '' if boxes[0] is None else ' (boxes %s%s)' % ('; '.join(str(b) for b in boxes[:3]),
                                                      ' ...' if len(boxes) > 3 else ''))
        for i, boxes in sorted(per_image.items())]
    return ('the model gave NaN/inf heatmaps for %d of the %d people of the %d image%s of this call: %s%s: '
            'non-finite weights, or an fp16 overflow (TEST.AMP)?'
            % (len(bad), len(records), len(images), '' if len(images) == 1 else 's', '; '.join(where[:5]),
               ' ...' if len(where) > 5 else ''))
