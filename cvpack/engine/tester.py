"""The test loop and ``test_main`` (docs/reference/rsn_mspn.md §5, §6, docs/reference/defects.md R#3, R#12).

The original ``test.py -i N`` silently evaluated random weights when ``iter-N.pth`` was missing and gathered
results through CUDA. Here a missing checkpoint is an error naming the path (and the checkpoints that do
exist), ranks take contiguous shards of the val set without padding duplicates, the predictions are
gathered as Python objects on the CPU, and rank 0 alone runs the evaluator and writes the files.
"""
import glob
import json
import numbers
import os
import os.path as osp

import torch

from .. import dist as comm
from ..data.samplers import shard_indices
from ..decode.heatmap import NonFiniteHeatmaps
from ..inference.runner import predict_batches
from ..protocols import DetectionStats, GroundTruthCheck
from ..safe_load import is_url
from .args import parse_with_config, test_parser
from .checkpoint import LAST_NAME
from .launch import cleanup_distributed, dist_timeout, setup_distributed
from .logger import log_fatal, setup_logger
from .trainer import default_collate, default_dataset_builder
from .utils import prepare_model

__all__ = ['test_main', 'resolve_test_checkpoint', 'run_inference', 'load_for_test', 'describe_box_source',
           'limit_images', 'restrict_evaluator', 'agree_on_failure']


def resolve_test_checkpoint(cfg, iteration=None, checkpoint=None, log=None):
    """``--checkpoint`` > ``-i N`` (OUTPUT_DIR/iter-N.pth) > OUTPUT_DIR/iter-last.pth (when it exists) > MODEL.WEIGHT.

    iter-last.pth comes before MODEL.WEIGHT: after fine-tuning from MODEL.WEIGHT a plain ``test.py`` must
    score the trained weights, not the starting ones. The choice is logged (``log``). Raises
    FileNotFoundError naming the path, and the checkpoints that exist, when nothing is found: testing
    random weights is never what anyone wants.
    """
    out = cfg.OUTPUT_DIR
    last = osp.join(out, LAST_NAME)
    if checkpoint:
        path, how = checkpoint, '--checkpoint'
    elif iteration is not None:
        path, how = osp.join(out, 'iter-%d.pth' % iteration), '-i %d' % iteration
    elif osp.lexists(last) or not cfg.MODEL.WEIGHT:   # a dangling link is an error, not MODEL.WEIGHT
        path, how = last, 'OUTPUT_DIR/%s (no -i / --checkpoint given)' % LAST_NAME
    else:
        path, how = cfg.MODEL.WEIGHT, 'MODEL.WEIGHT (no -i / --checkpoint, no %s in OUTPUT_DIR)' % LAST_NAME
    if log is not None:
        log.info('test checkpoint: %s (from %s)', path, how)
    if is_url(path):   # --checkpoint or MODEL.WEIGHT by URL: downloaded and read by cvpack.safe_load
        return path
    if not osp.isfile(path):
        found = sorted(osp.basename(p) for p in glob.glob(osp.join(out, 'iter-*.pth')) if osp.isfile(p))
        dangling = ' (a dangling link: its target %s is gone)' % os.readlink(path) if osp.islink(path) else ''
        raise FileNotFoundError('test checkpoint not found: %s%s (from %s). Checkpoints in %s: %s'
                                % (path, dangling, how, out, ', '.join(found) or 'none'))
    return path


def load_for_test(cfg, build_model, path, strict=True, log=None):
    """Read ``path`` (ours, the authors', mmpose's or an exp's project format; path or URL), apply the config
    overrides the weights carry (architecture options, preprocessing, decoder) *before* building the model, and
    load strictly: :func:`cvpack.weights.build_model_with_weights`, the path of ``python -m cvpack.tools.convert``
    and the inference API. Returns (cfg with the overrides (a copy), model in eval mode)."""
    from ..weights import build_model_with_weights
    cfg, model, prepared = build_model_with_weights((cfg, build_model), path, strict=strict, log=log)
    if log is not None and prepared.format != 'megvii':
        log.info('converted %s weights on the fly (format %s; %d source entries dropped)', path, prepared.format,
                 len(prepared.dropped))
    return cfg, model


def _box_source(cfg):
    if cfg.TEST.USE_GT_BBOX:
        return 'ground-truth boxes (TEST.USE_GT_BBOX)'
    det = cfg.TEST.DET_FILE
    if det:
        root = cfg.DATASET.ROOT
        return 'detections from %s (TEST.DET_FILE)' % (det if osp.isabs(det) else osp.join(root, det))
    return 'not stated by the config'


def _dataset_image_ids(dataset):
    """The image id of each sample (``records`` of the top-down datasets, through a Subset), or None."""
    if isinstance(dataset, torch.utils.data.Subset):
        ids = _dataset_image_ids(dataset.dataset)
        return None if ids is None else [ids[i] for i in dataset.indices]
    records = getattr(dataset, 'records', None)
    if not isinstance(records, (list, tuple)) or not all(isinstance(r, dict) and 'image_id' in r for r in records):
        return None
    return [r['image_id'] for r in records]


def _annotated_image_count(cfg):
    """Images in the val annotation file (``DATASET.ROOT/VAL_ANN``, COCO-style json), or None when unknown.

    A project's own dataset (``TEST.EVALUATOR`` / its dataset builder, e.g. the engine tests' toy one) may have no
    annotation file, so this is the one place that accepts a DATASET block without ROOT / VAL_ANN."""
    d = cfg.DATASET
    path = osp.join(d.get('ROOT', ''), d.get('VAL_ANN', '') or '')
    if not path.endswith('.json') or not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            images = json.load(f).get('images')
    except (OSError, ValueError, AttributeError):
        return None
    return len(images) if isinstance(images, list) else None


def describe_box_source(cfg, dataset):
    """'boxes: <source>; N samples (people) on M images[ of the annotation file's T]' for the logs: a detection
    file covering a few images of the val set (the shipped subset's) is then plain to see."""
    text = 'boxes: %s' % _box_source(cfg)
    ids = _dataset_image_ids(dataset)
    if ids is not None:
        total = _annotated_image_count(cfg)
        text += '; %d people on %d images%s' % (len(ids), len(set(ids)),
                                                 ' of the %d annotated' % total if total else '')
        if total and len(set(ids)) < total and not cfg.TEST.USE_GT_BBOX and not cfg.TEST.MAX_IMAGES:
            text += ' (the detections cover only these; TEST.USE_GT_BBOX True tests every annotated person)'
    return text


def _log_det_stats(dataset, log):
    """Detections dropped while building the val set from TEST.DET_FILE (``dataset.det_stats``,
    :class:`cvpack.protocols.DetectionStats`, filled by ``cvpack.data.coco.coco_det_records``), so a low instance
    count is explained in the log."""
    stats = dataset.det_stats if isinstance(dataset, DetectionStats) else None
    if stats:
        log.info('detections skipped: %d below TEST.DET_SCORE_THRESH, %d of another category, %d on images '
                 'not in the annotation file', stats.get('low_score', 0), stats.get('other_category', 0),
                 stats.get('unknown_image', 0))


def run_inference(model, dataset, predictor, cfg, ctx, collate_fn, progress=True, what='inference'):
    """Predict this rank's contiguous shard; returns every rank's instances on rank 0 (None elsewhere).
    Used by test.py and by the evaluation during training (cvpack/engine/periodic_eval.py), which names itself in
    ``what`` ('evaluation during training at iteration N'). A rank whose prediction fails (heatmaps holding
    NaN/inf) makes every rank raise the same error, naming ``what``, the rank and its message
    (:func:`agree_on_failure`)."""
    indices = shard_indices(len(dataset), ctx.rank, ctx.world_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=int(cfg.TEST.IMS_PER_GPU), sampler=indices, collate_fn=collate_fn,
        num_workers=int(cfg.DATALOADER.NUM_WORKERS), pin_memory=ctx.device.type == 'cuda')
    instances, error = None, None
    try:
        instances = predict_batches(model, loader, predictor, cfg, ctx.device, progress=progress and ctx.is_main)
    except Exception as exc:   # raised below on every rank: the others would wait for this one in the gather
        error = exc
    agree_on_failure(error, what)
    gathered = comm.all_gather_object(instances)
    if not ctx.is_main:
        return None
    return [inst for part in gathered for inst in part]


def agree_on_failure(error, what):
    """Collective: every rank says whether its part failed (``error``, an exception or None); when one did, every
    rank raises the first failing rank's error, so none waits for it in the next collective and none reports a
    bare peer/collective error. Heatmaps holding NaN/inf raise :class:`NonFiniteHeatmaps` on every rank (its
    ``image_ids`` the failing rank's), other failures the failing rank's exception there and a RuntimeError
    elsewhere. The message: '<what>: rank R of W: <type>: <message>'."""
    own = None if error is None else _failure_summary(error)
    failed = [(rank, f) for rank, f in enumerate(comm.all_gather_object(own)) if f is not None]
    if not failed:
        return
    rank, (name, message, image_ids) = failed[0]
    text = '%s: rank %d of %d: %s: %s' % (what, rank, comm.get_world_size(), name, message)
    if name == NonFiniteHeatmaps.__name__:
        agreed = NonFiniteHeatmaps(text)
        agreed.image_ids = image_ids
        raise agreed from error
    if error is not None and rank == comm.get_rank():
        raise error
    raise RuntimeError(text) from error


def _failure_summary(error):
    """(type name, message, image ids or None) of ``error`` as plain values: all_gather_object pickles them, and a
    message whose str() fails or an attribute that does not pickle would fail this rank alone, before the gather,
    leaving the others waiting in it."""
    try:
        message = str(error)
    except Exception as exc:   # any failure of an exception's own __str__
        message = '<str() of the %s failed: %s>' % (type(error).__name__, type(exc).__name__)
    ids = getattr(error, 'image_ids', None) if isinstance(error, NonFiniteHeatmaps) else None
    if ids is not None:
        ids = [int(i) if isinstance(i, numbers.Integral) else i if isinstance(i, str) else repr(i) for i in ids]
    return type(error).__name__, message, ids


def limit_images(dataset, cfg, log=None):
    """``TEST.MAX_IMAGES`` N > 0: the samples of the first N images (in dataset order); 0 = the whole dataset."""
    limit = int(cfg.TEST.MAX_IMAGES)
    if limit <= 0:
        return dataset
    ids = _dataset_image_ids(dataset)
    if ids is None:
        raise ValueError('TEST.MAX_IMAGES %d: the val dataset (%s) has no records with image ids to select from; '
                         'set TEST.MAX_IMAGES 0' % (limit, type(dataset).__name__))
    first = []
    for i in ids:
        if i not in first:
            first.append(i)
        if len(first) == limit:
            break
    keep = set(first)
    subset = torch.utils.data.Subset(dataset, [n for n, i in enumerate(ids) if i in keep])
    subset.image_ids = first
    if log is not None:
        log.info('TEST.MAX_IMAGES %d: %d samples of the first %d images', limit, len(subset), len(first))
    return subset


def restrict_evaluator(evaluator, dataset):
    """Tell ``evaluator`` to score only the images of a TEST.MAX_IMAGES subset (its ``restrict_to``); the
    evaluators score the whole annotation file otherwise, counting the images left out as missed."""
    image_ids = getattr(dataset, 'image_ids', None)
    if image_ids is None:
        return evaluator
    if not callable(getattr(evaluator, 'restrict_to', None)):
        raise ValueError('TEST.MAX_IMAGES: the evaluator %s cannot score a subset of the images (it has no '
                         'restrict_to(image_ids, indices)); set TEST.MAX_IMAGES 0' % type(evaluator).__name__)
    evaluator.restrict_to(image_ids, dataset.indices)
    return evaluator


def _log_summary(metrics, path, log):
    """One line with every number of the result (the evaluator logs its own table) and where they were written:
    metrics with 4 decimals, counts (PCKh's ``records``, ``records_skipped``) as integers."""
    nums = ', '.join(('%s %d' if isinstance(v, int) else '%s %.4f') % (k, v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool))
    log.info('metrics: %s (written to %s)', nums, path)


def _checked_evaluator(cfg, dataset, evaluator_builder=None):
    """The evaluator, built and its ground truth validated before inference (:class:`GroundTruthCheck`), on every
    rank alike: a val file pycocotools refuses (no 'area', a bad keypoint list) fails in seconds, naming the file,
    not after the whole inference; every rank reads the same file, so all stop together."""
    if evaluator_builder is None:
        from ..evaluation import build_evaluator as evaluator_builder
    evaluator = restrict_evaluator(evaluator_builder(cfg), dataset)
    if isinstance(evaluator, GroundTruthCheck):
        evaluator.check_ground_truth()
    return evaluator


def test_main(cfg, build_model, argv=None, dataset_builder=None, predictor_builder=None,
              evaluator_builder=None, collate_fn=None):
    """Entry point of an exp's ``test.py``: ``test.py [-i ITER | --checkpoint PATH] [KEY VALUE ...]``.

    Builders default to ``cvpack.data.build_dataset``, ``cvpack.inference.build_predictor`` and
    ``cvpack.evaluation.build_evaluator``; tests inject small ones. Returns the metrics dict on rank 0
    (None on other ranks). Writes TEST_DIR/test_log.txt, TEST_DIR/results.json (the evaluator) and
    TEST_DIR/metrics.json.
    """
    args, cfg = parse_with_config(test_parser(cfg.EXP_NAME), cfg, argv)
    ctx = setup_distributed(cfg.MODEL.DEVICE, args.local_rank, dist_timeout(cfg))
    log_file = None
    try:
        if ctx.is_main:
            os.makedirs(cfg.TEST_DIR, exist_ok=True)
        comm.barrier()
        log = setup_logger('cvpack.test', osp.join(cfg.TEST_DIR, 'test_log.txt'), ctx.rank)
        log_file = osp.abspath(osp.join(cfg.TEST_DIR, 'test_log.txt'))
        path = resolve_test_checkpoint(cfg, args.iter, args.checkpoint, log)   # a URL is read by safe_load
        cfg, model = load_for_test(cfg, build_model, path, strict=not args.non_strict, log=log)
        model = prepare_model(model, cfg, ctx, log).eval()
        if cfg.TEST.COMPILE:
            from ..inference.compile import maybe_compile
            model = maybe_compile(model, cfg, log)
        if dataset_builder is None:
            dataset_builder = default_dataset_builder
        if predictor_builder is None:
            from ..inference import build_predictor as predictor_builder
        dataset = limit_images(dataset_builder(cfg, 'val'), cfg, log)
        evaluator = _checked_evaluator(cfg, dataset, evaluator_builder)
        log.info('testing %s on %d samples over %d process(es); %s', path, len(dataset), ctx.world_size,
                 describe_box_source(cfg, dataset))
        _log_det_stats(dataset, log)
        instances = run_inference(model, dataset, predictor_builder(cfg), cfg, ctx,
                                  collate_fn if collate_fn is not None else default_collate())
        metrics = None
        if ctx.is_main:
            log.info('evaluating %d instances', len(instances))
            metrics = evaluator(instances, cfg.TEST_DIR)
            record = {'checkpoint': path if is_url(path) else osp.abspath(path),   # (abspath mangles a URL)
                      'num_instances': len(instances), 'metrics': metrics}
            metrics_path = osp.join(cfg.TEST_DIR, 'metrics.json')
            with open(metrics_path, 'w') as f:
                json.dump(record, f, indent=2, default=float)
            _log_summary(metrics, metrics_path, log)
        comm.barrier()
        return metrics
    except BaseException as exc:
        if log_file:   # the crash in test_log.txt too, as train.py writes its own into log.txt
            log_fatal(exc, log_file, 'cvpack.test', 'test')
        raise
    finally:
        cleanup_distributed()

