"""Evaluation during training: ``TEST.EVAL_PERIOD``, ``metrics.jsonl`` and ``best.pth`` (docs/ENGINE.md
"Evaluation during training").

Every ``TEST.EVAL_PERIOD`` optimizer steps, or epochs when ``SOLVER.EPOCHS`` is set (:func:`eval_period_iters`),
and after the last step, the trainer runs the exp's own test pipeline, the one ``test.py`` runs
(:func:`cvpack.engine.tester.run_inference` + the exp's predictor and evaluator, the val split with the config's
box source, ``TEST.IMS_PER_GPU``, no augmentation, ``TEST.MAX_IMAGES``), sharded over the training processes.
The evaluation draws no training randomness: the global RNG states are saved before and put back after (the val
DataLoader alone draws a seed), so a run with evaluation resumes exactly as one without.

Start-up (:meth:`PeriodicEvaluator.prepare`): the val set, the predictor and the evaluator are built before
iteration 1 and ``TEST.BEST_METRIC`` is checked against the evaluator's :class:`~cvpack.protocols.MetricNames`, so
a wrong setting fails before any training, not at the first evaluation. The checkpoint of an iteration is saved
*before* its evaluation (a failing evaluation loses no training); the metrics.jsonl line, written last, marks an
evaluation as done: a run resumed at an iteration whose line is missing evaluates it first (:meth:`resume_at`).
"""
import json
import logging
import math
import os
import os.path as osp

from .. import dist as comm
from ..config import ConfigError
from ..protocols import GroundTruthCheck, MetricNames
from .checkpoint import rng_state, set_rng_state

__all__ = ['PeriodicEvaluator', 'BEST_NAME', 'METRICS_NAME', 'choose_best_metric', 'eval_period_iters',
           'trim_metrics_log', 'set_aside_metrics_log']

BEST_NAME = 'best.pth'
METRICS_NAME = 'metrics.jsonl'
EVAL_DIR = 'eval'
# The evaluators' headline metric, in order of preference: COCO-style keypoint AP, then MPII PCKh@0.5 'Mean'.
DEFAULT_BEST = ('AP', 'Mean')


def numeric_metrics(metrics, names=None):
    """The scalar numbers of an evaluator's result (tables may also hold strings or lists); with ``names`` (an
    evaluator's :class:`MetricNames`), only those: a table's counts (PCKh's ``records``) are not metrics."""
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and (names is None or k in names)}


def declared_metric_names(evaluator):
    """``evaluator.metric_names()`` as a set when it declares them (:class:`MetricNames`), else None."""
    return set(evaluator.metric_names()) if isinstance(evaluator, MetricNames) else None


def _beats(value, best):
    """Whether ``value`` is a new best (higher is better) over ``best`` (a dict with 'value', or None). A NaN/inf
    value never is: a NaN taken as the first best could never be beaten (NaN > x is false), and best.pth would
    stay at that evaluation for the rest of the run. A non-finite best (stored by a checkpoint written before
    this rule) is beaten by any finite value."""
    return math.isfinite(value) and (best is None or not math.isfinite(best['value']) or value > best['value'])


def eval_period_iters(period, solver):
    """``TEST.EVAL_PERIOD`` (``period``; 0 = off) in optimizer steps, for the resolved ``solver``
    (:func:`cvpack.solver.resolve_solver`). The period counts the schedule's unit, as ``SOLVER.CHECKPOINT_EPOCHS``
    does for the checkpoints: epochs when ``SOLVER.EPOCHS`` is set (``period * ITERS_PER_EPOCH`` steps), optimizer
    steps otherwise. Returns ``(iterations, unit)`` with unit 'epoch' or 'iteration'."""
    period = int(period or 0)
    if solver.get('EPOCHS') is not None:
        return period * int(solver.ITERS_PER_EPOCH), 'epoch'
    return period, 'iteration'


def choose_best_metric(name, metrics):
    """``TEST.BEST_METRIC`` (``name``; '' = 'AP' when the evaluator gives it, else 'Mean') among ``metrics``.
    Raises KeyError naming the metrics the evaluator gives when the name is not one of them."""
    if name:
        if name not in metrics:
            raise KeyError('TEST.BEST_METRIC %r is not a metric of this evaluator; it gives %s'
                           % (name, sorted(metrics)))
        return name
    for candidate in DEFAULT_BEST:
        if candidate in metrics:
            return candidate
    raise KeyError('TEST.BEST_METRIC is not set and the evaluator gives neither %s; set it to one of %s'
                   % (' nor '.join(DEFAULT_BEST), sorted(metrics)))


def trim_metrics_log(path, last_iteration):
    """Drop the lines of ``metrics.jsonl`` after ``last_iteration`` (a run resumed from an earlier checkpoint
    evaluates those iterations again). Returns the number of lines dropped."""
    if not osp.isfile(path):
        return 0
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:   # a line cut by a kill -9: dropped
            continue
        if int(record.get('iteration', 0)) <= last_iteration:
            keep.append(line if line.endswith('\n') else line + '\n')
    if len(keep) != len(lines):
        tmp = path + '.tmp.%d' % os.getpid()
        with open(tmp, 'w') as f:
            f.writelines(keep)
        os.replace(tmp, path)
    return len(lines) - len(keep)


def set_aside_metrics_log(output_dir, log):
    """A run that starts from scratch in ``output_dir`` (rank 0): another run's metrics.jsonl there (its checkpoints
    deleted by hand; --no-auto-resume moves both) is renamed ``metrics.jsonl.<UTC time>.old``. Its lines would be
    appended to, and a later resume of this run (:meth:`PeriodicEvaluator.resume_at`) would take the old run's line
    of iteration N for the evaluation of this run's iter-N.pth. Returns the new path, or None."""
    import time
    path = osp.join(output_dir, METRICS_NAME)
    if not osp.isfile(path):
        return None
    old = '%s.%s.old' % (path, time.strftime('%Y%m%d-%H%M%S', time.gmtime()))
    os.replace(path, old)
    log.warning('%s is from an earlier run (no checkpoint to resume): renamed %s', path, osp.basename(old))
    return old


def read_metrics_line(path, iteration):
    """The metrics.jsonl record of ``iteration`` (the last one, when several), or None."""
    found = None
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:   # a line cut by a kill -9
                    continue
                if isinstance(record, dict) and record.get('iteration') == iteration:
                    found = record
    return found


class PeriodicEvaluator:
    """Runs the test pipeline on the val split for the trainer; keeps the best value of ``TEST.BEST_METRIC``.

    Builders are the exp's (``train_main``'s arguments): ``dataset_builder(cfg, 'val')``,
    ``predictor_builder(cfg)``, ``evaluator_builder(cfg)``; the dataset and the callables are built by
    :meth:`prepare`, before training. ``solver``: the resolved solver, whose epochs ``TEST.EVAL_PERIOD`` counts when
    SOLVER.EPOCHS is set. ``best`` (``{'metric', 'value', 'iteration'}`` or None) goes into every checkpoint;
    ``pending``: the iteration of an evaluation a resumed run must do first (:meth:`resume_at`), else None.
    """

    def __init__(self, cfg, ctx, solver, dataset_builder, collate_fn, predictor_builder=None,
                 evaluator_builder=None):
        self.cfg, self.ctx = cfg, ctx
        self.given = int(cfg.TEST.EVAL_PERIOD)
        self.period, self.unit = eval_period_iters(self.given, solver)
        self.metric = cfg.TEST.BEST_METRIC
        self.log = logging.getLogger('cvpack.train')
        self._builders = (dataset_builder, collate_fn, predictor_builder, evaluator_builder)
        self._parts = None
        self.best = None
        self.pending = None

    @property
    def enabled(self):
        return self.period > 0

    def describe(self):
        """'3 iterations' or '1 epoch(s) = 3 iterations' (TEST.EVAL_PERIOD in its unit and in steps)."""
        if self.unit == 'epoch':
            return '%d epoch(s) = %d iterations' % (self.given, self.period)
        return '%d iterations' % self.period

    def due(self, done, max_iter):
        return self.enabled and (done % self.period == 0 or done == max_iter)

    def load_best(self, best, path):
        """The best-so-far stored in a resumed checkpoint (``path``; kept unless TEST.BEST_METRIC changed)."""
        if best and self.metric and best.get('metric') != self.metric:
            self.log.warning('%s tracked the best %s; this run tracks TEST.BEST_METRIC %s: best.pth restarts',
                             path, best.get('metric'), self.metric)
            best = None
        self.best = dict(best) if best else None
        if self.best:
            self.log.info('best so far: %s %.4f at iteration %d', self.best['metric'], self.best['value'],
                          self.best['iteration'])

    def resume_at(self, iteration, max_iter):
        """After resuming at ``iteration`` (collective; rank 0 reads metrics.jsonl). Its checkpoint was saved before
        its evaluation, so ``best`` misses that one: metrics.jsonl's line of ``iteration`` (written once the
        evaluation and its best.pth are done) is folded in; without a line the evaluation did not finish (it
        failed, or the run was killed during it) and becomes :attr:`pending`, done before the next iteration."""
        self.pending = None
        if iteration <= 0 or not self.due(iteration, max_iter):
            return
        path = osp.join(self.cfg.OUTPUT_DIR, METRICS_NAME)
        record = comm.broadcast_object(read_metrics_line(path, iteration) if self.ctx.is_main else None)
        if record is None:
            self.pending = iteration
            self.log.info('the evaluation of iteration %d did not finish (no line in %s): it runs before training '
                          'goes on', iteration, METRICS_NAME)
            return
        metrics = numeric_metrics(record)
        metrics.pop('iteration', None)
        try:
            metric = choose_best_metric(self.metric, metrics)
        except KeyError:   # a line of another metric set (the evaluator changed): nothing to compare
            return
        if _beats(metrics[metric], self.best):
            self.best = {'metric': metric, 'value': metrics[metric], 'iteration': int(iteration)}

    def prepare(self):
        """Build the val set, the predictor and the evaluator now, before iteration 1 (every rank builds the
        set, the predictor and the evaluator, as the evaluation does), check TEST.BEST_METRIC against the
        evaluator's metric names and have rank 0's evaluator validate its ground truth (:class:`GroundTruthCheck`):
        a missing val annotation or detection file, ground truth the evaluator refuses, a bad evaluator setting
        or an unknown metric fails before any training, not at the first evaluation hours later.

        Collective: when one rank fails, every rank raises (the others would wait for it in the first
        all-reduce). An unknown TEST.BEST_METRIC raises :class:`cvpack.config.ConfigError` (a usage error)."""
        if not self.enabled:
            return
        error = None
        try:
            self._build()
        except Exception as exc:   # raised below, after every rank has said how it went
            error = exc
        own = None if error is None else '%s: %s' % (type(error).__name__, error)
        failed = [(rank, msg) for rank, msg in enumerate(comm.all_gather_object(own)) if msg]
        if error is not None:
            raise error
        if failed:
            raise RuntimeError('evaluation during training (TEST.EVAL_PERIOD): rank %d could not build its val '
                               'set / predictor / evaluator: %s' % failed[0])

    def check_metric(self, evaluator):
        """TEST.BEST_METRIC ('' = the default) against ``evaluator.metric_names()`` (:class:`MetricNames`);
        an evaluator that does not declare them is checked at its first evaluation."""
        if not isinstance(evaluator, MetricNames):
            self.log.info('the evaluator (%s) does not declare its metric names (metric_names()): TEST.BEST_METRIC '
                          'is checked at the first evaluation', type(evaluator).__name__)
            return
        try:
            choose_best_metric(self.metric, list(evaluator.metric_names()))
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None

    def _build(self):
        from .tester import describe_box_source, limit_images, restrict_evaluator
        dataset_builder, collate_fn, predictor_builder, evaluator_builder = self._builders
        if predictor_builder is None:
            from ..inference import build_predictor as predictor_builder
        if evaluator_builder is None:
            from ..evaluation import build_evaluator as evaluator_builder
        evaluator = evaluator_builder(self.cfg)   # first: the metric check costs nothing, the val set may
        self.check_metric(evaluator)
        dataset = limit_images(dataset_builder(self.cfg, 'val'), self.cfg, self.log)
        self.log.info('evaluation every %s on %d val samples over %d process(es); %s', self.describe(),
                      len(dataset), self.ctx.world_size, describe_box_source(self.cfg, dataset))
        evaluator = restrict_evaluator(evaluator, dataset) if self.ctx.is_main else None   # rank 0 scores
        if isinstance(evaluator, GroundTruthCheck):   # stricter than the val set's reader (area, num_keypoints)
            evaluator.check_ground_truth()
        self._parts = (dataset, collate_fn, predictor_builder(self.cfg), evaluator)

    def run(self, model, done):
        """Evaluate ``model`` (the unwrapped training model) after iteration ``done``; collective.

        Returns ``(metrics, improved)`` on every rank: the evaluator's numeric metrics and whether ``best``
        improved (higher is better); the caller writes them with :meth:`record`. The model goes back to its mode
        and the RNG states to their values.
        """
        from .tester import run_inference
        saved, was_training = rng_state(), model.training
        out_dir = osp.join(self.cfg.OUTPUT_DIR, EVAL_DIR)
        model.eval()
        try:
            if self._parts is None:
                self._build()
            dataset, collate_fn, predictor, evaluator = self._parts
            # a rank's NaN/inf heatmaps stop every rank with one error naming this evaluation (a diverged model)
            instances = run_inference(model, dataset, predictor, self.cfg, self.ctx, collate_fn, progress=False,
                                      what='evaluation during training at iteration %d (TEST.EVAL_PERIOD)' % done)
            result, error = None, None
            if self.ctx.is_main:
                try:
                    os.makedirs(out_dir, exist_ok=True)
                    result = numeric_metrics(evaluator(instances, out_dir), declared_metric_names(evaluator))
                    metric = choose_best_metric(self.metric, result)
                except Exception as exc:   # raised below on every rank together
                    error = exc
                else:
                    result = (result, metric)
            shared = comm.broadcast_object(None if error else result)
            if shared is None:
                if error is not None:
                    raise error
                raise RuntimeError('evaluation at iteration %d failed on rank 0 (see its log)' % done)
        finally:
            model.train(was_training)
            set_rng_state(saved)
        metrics, metric = shared
        value = metrics[metric]
        improved = _beats(value, self.best)
        if improved:
            self.best = {'metric': metric, 'value': value, 'iteration': int(done)}
        if not math.isfinite(value):
            self.log.warning('eval at iteration %d: TEST.BEST_METRIC %s is %s: never a best (best.pth is not '
                             'written for it)', done, metric, value)
        best = ('best %s %.4f (iteration %d)' % (metric, self.best['value'], self.best['iteration']) if self.best
                else 'no best %s yet' % metric)
        self.log.info('eval at iteration %d: %s; %s', done, ', '.join('%s %.4f' % kv for kv in metrics.items()), best)
        return metrics, improved

    def record(self, metrics, done):
        """Append the metrics.jsonl line of iteration ``done`` (rank 0): the trainer writes it last, after
        best.pth, so the line means the evaluation is complete (:meth:`resume_at`)."""
        if self.ctx.is_main:
            with open(osp.join(self.cfg.OUTPUT_DIR, METRICS_NAME), 'a') as f:
                f.write(json.dumps(dict({'iteration': int(done)}, **metrics)) + '\n')
