"""The iteration-based training loop and ``train_main`` (docs/reference/rsn_mspn.md §6, docs/reference/defects.md
R#1-R#3, R#7, R#9, R#12, R#21-R#25, R#27).

Behaviour kept from the original: iteration-based schedule (MAX_ITER, CHECKPOINT_PERIOD, IMS_PER_GPU per
process), DDP with ``broadcast_buffers=False`` (each rank keeps its own BN running statistics and rank 0's
are saved, as the original did), the loss computed inside ``forward``, ``iter-N.pth`` + ``iter-last.pth``.
Changed: single-process and CPU/gloo runs work; the scheduler steps after the optimizer; the sampler,
RNG, scaler and scheduler state resume exactly; only rank 0 writes files; a non-finite loss stops the run.
"""
import contextlib
import logging
import os
import os.path as osp
import random
import signal
import time
import warnings

import numpy as np
import torch

from .. import dist as comm
from ..config import ConfigError, clone, freeze
from ..config.argv import usage_error
from ..data.samplers import IterationBasedSampler
from ..protocols import AspectRatioGrouped, PretrainedInit
from ..solver import build_lr_scheduler, build_optimizer, describe_scaling, load_optimizer_state, resolve_solver
from ..safe_load import CheckpointError, hand_placed_path, is_url, resolve_source, url_cache_path
from .args import parse_with_config, train_parser
from .checkpoint import (LAST_NAME, auto_resume_path, check_training_checkpoint, link_last,
                         load_model_weights, match_state, move_checkpoints_aside, non_finite_tensors,
                         remove_stale_temporaries, rng_state,
                         save_checkpoint, set_rng_state, strip_prefix)
from .launch import cleanup_distributed, dist_timeout, setup_distributed
from .periodic_eval import BEST_NAME, METRICS_NAME, PeriodicEvaluator, set_aside_metrics_log, trim_metrics_log
from .logger import TensorboardWriter, log_fatal, setup_logger
from .preemption import PREEMPTED_EXIT_CODE, Preempted, StopSignal
from .utils import amp_dtype, autocast, prepare_model, to_device, write_run_files

__all__ = ['Trainer', 'train_main', 'default_dataset_builder', 'default_collate']


def default_dataset_builder(cfg, split):
    from ..data import build_dataset
    return build_dataset(cfg, split)


def default_collate():
    from ..data import collate
    return collate


def _seed_worker(worker_id):
    """Per-worker numpy / random seeds from the worker's torch seed (docs/reference/defects.md R#25: augmentations drawn
    from the global RNGs must not be correlated across workers, whatever the torch version); SIGTERM ignored."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)
    # A preemption SIGTERM often reaches the whole process group: a worker killed by it would make the
    # training process fail in the middle of its preemption checkpoint. Workers ignore it; they end when the
    # loader shuts them down or their parent exits (cvpack/engine/preemption.py).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Trainer:
    """Holds the model, optimizer, scheduler and data of one training run (built by :func:`train_main`)."""

    def __init__(self, cfg, build_model, ctx, dataset_builder=None, collate_fn=None, predictor_builder=None,
                 evaluator_builder=None):
        self.cfg, self.ctx = cfg, ctx
        self.log = logging.getLogger('cvpack.train')
        seed = int(cfg.SEED) + ctx.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.dataset = (dataset_builder or default_dataset_builder)(cfg, 'train')
        self.collate_fn = collate_fn if collate_fn is not None else default_collate()
        self.solver = resolve_solver(cfg.SOLVER, ctx.world_size, len(self.dataset))
        self.model = prepare_model(build_model(cfg), cfg, ctx, self.log)
        self.ddp = self.model
        if ctx.distributed:
            ids = [ctx.local_rank] if ctx.device.type == 'cuda' else None
            self.ddp = wrap_ddp(self.model, ids, bool(cfg.MODEL.FIND_UNUSED_PARAMETERS))
        self.optimizer = build_optimizer(self.solver, self.model, self.solver.LR)
        self.scheduler = build_lr_scheduler(self.solver, self.optimizer)
        self.amp = amp_dtype(cfg.SOLVER.AMP, ctx.device)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp == torch.float16)
        self.start_iter = 0
        # SOLVER.ACCUMULATE: micro-batches of IMS_PER_GPU per optimizer step; iterations count optimizer steps
        self.accumulate = int(cfg.SOLVER.ACCUMULATE)
        self.sampler = None    # set by build_loader
        self.tb = TensorboardWriter(cfg.TENSORBOARD_DIR, enabled=ctx.is_main)
        self.evaluator = PeriodicEvaluator(cfg, ctx, self.solver, dataset_builder or default_dataset_builder,
                                           self.collate_fn, predictor_builder, evaluator_builder)

    # ----------------------------------------------------------------- state
    def state_dict(self, iteration):
        """Checkpoint content (weights_only-safe); collective: every rank must call it (RNG gather)."""
        # No dataset RNG state: the shipped pipelines draw each sample's augmentations from its own key
        # (cvpack.data.samplers.sample_rng), which the sampler position restores.
        rngs = comm.all_gather_object(rng_state())
        # optimizer_class: Adam's and AdamW's states have the same keys under an older torch (load_optimizer_state)
        return {'model': self.model.state_dict(), 'optimizer': self.optimizer.state_dict(),
                'optimizer_class': type(self.optimizer).__name__, 'scheduler': self.scheduler.state_dict(),
                'scaler': self.scaler.state_dict(),
                'iteration': int(iteration), 'sampler': self.sampler.state_dict(iteration * self.accumulate),
                'rng': rngs, 'world_size': self.ctx.world_size, 'best': self.evaluator.best}

    def resume(self, path, ckpt=None):
        """Restore everything saved by :meth:`state_dict` so the run continues exactly (``ckpt``: its content,
        when already read). Errors name the file: unreadable, not a checkpoint, NaN/inf, another network."""
        ckpt = check_training_checkpoint(path, ckpt)
        state = strip_prefix(ckpt['model'])   # the original's files may keep 'module.'
        match_state(self.model, state, path, strict=True)
        self.model.load_state_dict(state)
        base_lrs = [g['initial_lr'] for g in self.optimizer.param_groups]  # the current effective solver
        changed = []
        try:
            if 'optimizer' in ckpt:
                changed = load_optimizer_state(self.optimizer, ckpt['optimizer'], ckpt.get('optimizer_class'))
            if 'scheduler' in ckpt:
                sched = dict(ckpt['scheduler'])
                sched['lr_lambdas'] = [None] * len(self.scheduler.lr_lambdas)  # shape from the current config
                self.scheduler.load_state_dict(sched)
            if ckpt.get('scaler'):
                self.scaler.load_state_dict(ckpt['scaler'])
        except (ValueError, KeyError, TypeError, RuntimeError) as e:   # e.g. another SOLVER's parameter groups
            raise CheckpointError(path, 'its optimizer/scheduler state does not fit this run\'s solver (%s: %s); '
                                  'use --weights to start from its weights only' % (type(e).__name__, e)) from None
        old_lrs = self._reset_base_lrs(base_lrs)
        if changed:
            self.log.warning('resuming %s with the optimizer settings of the current config, not the checkpoint\'s: %s',
                             path, ', '.join(changed))
        self.start_iter = int(ckpt.get('iteration', 0))
        sampler = ckpt.get('sampler') or {}
        if int(sampler.get('world_size', self.ctx.world_size)) != self.ctx.world_size:
            self.log.warning('resuming with %d processes from a %d-process checkpoint: the data order and '
                             'schedule change from here on; the base LR is the current effective one, %.3e '
                             '(the checkpoint had %.3e)', self.ctx.world_size, sampler['world_size'],
                             base_lrs[0], old_lrs[0])
        elif old_lrs != base_lrs:
            self.log.warning('resuming with base LR %.3e from the current config (the checkpoint had %.3e)',
                             base_lrs[0], old_lrs[0])
        data = self._data_order_changes(sampler)
        if data:
            self.log.warning('resuming %s with another data order than the checkpoint\'s (%s): the samples of the '
                             'iterations after %d are not those the interrupted run would have drawn (some skipped '
                             'or repeated)', path, ', '.join(data), self.start_iter)
        rngs = ckpt.get('rng') or []
        if len(rngs) == self.ctx.world_size:
            set_rng_state(rngs[self.ctx.rank])   # (augmentations draw from per-sample RNGs: nothing else to restore)
        self.evaluator.load_best(ckpt.get('best'), path)
        if self.ctx.is_main and trim_metrics_log(osp.join(self.cfg.OUTPUT_DIR, METRICS_NAME), self.start_iter):
            self.log.info('%s: dropped the evaluations after iteration %d (done again)', METRICS_NAME,
                          self.start_iter)
        self.evaluator.resume_at(self.start_iter, self.solver.MAX_ITER)   # the checkpoint predates its evaluation
        self.log.info('resumed from %s at iteration %d', path, self.start_iter)

    def _data_order_changes(self, sampler):
        """What differs between a checkpoint's sampler state and this run's data order (the world size is warned
        about apart): 'SOLVER.IMS_PER_GPU 2 -> 1', 'SEED 0 -> 3', 'train set length 10 -> 12', 'SOLVER.ACCUMULATE
        1 -> 2' (the sampler position is start iteration x ACCUMULATE micro-batches of IMS_PER_GPU)."""
        changes = []
        for key, name, now in (('batch_size', 'SOLVER.IMS_PER_GPU', int(self.solver.IMS_PER_GPU)),
                               ('seed', 'SEED', int(self.cfg.SEED)), ('dataset_len', 'train set length',
                                                                      len(self.dataset))):
            if key in sampler and int(sampler[key]) != now:
                changes.append('%s %s -> %d' % (name, sampler[key], now))
        drawn = sampler.get('iteration')
        if drawn is not None and self.start_iter > 0 and int(drawn) != self.start_iter * self.accumulate:
            changes.append('SOLVER.ACCUMULATE %g -> %d' % (int(drawn) / self.start_iter, self.accumulate))
        return changes

    def _reset_base_lrs(self, base_lrs):
        """Put the current effective LRs back after loading optimizer/scheduler state (which carries the
        checkpoint's ``initial_lr`` / ``base_lrs``: resuming on another number of processes kept the old
        LR) and recompute each group's LR at the resumed iteration. Returns the checkpoint's base LRs."""
        old = list(self.scheduler.base_lrs)
        self.scheduler.base_lrs = list(base_lrs)
        step = self.scheduler.last_epoch
        for group, lr, fn in zip(self.optimizer.param_groups, base_lrs, self.scheduler.lr_lambdas):
            group['initial_lr'] = lr
            group['lr'] = lr * fn(step)
        self.scheduler._last_lr = [g['lr'] for g in self.optimizer.param_groups]
        return old

    def resume_or_load(self, resume=None, auto=True):
        """``-c PATH`` > auto-resume > MODEL.WEIGHT (weights only, non-strict) > MODEL.PRETRAINED (ImageNet init
        through the model's ``load_pretrained``, only from scratch).

        Auto-resume continues from the newest *loadable* checkpoint of OUTPUT_DIR (:func:`auto_resume_path`):
        a dangling ``iter-last.pth`` or a truncated/corrupt/NaN latest file is skipped with a warning naming it;
        when OUTPUT_DIR holds checkpoints and none loads, the run stops with an error naming each file (it never
        quietly starts over and overwrites them, as it did). An explicit ``-c PATH`` never falls back.
        ``--no-auto-resume`` (``auto=False``) starts over after moving the old checkpoints into a timestamped
        ``previous-run-*`` subfolder (:func:`cvpack.engine.checkpoint.move_checkpoints_aside`, rank 0)."""
        last = osp.join(self.cfg.OUTPUT_DIR, LAST_NAME)
        if resume:
            if not osp.isfile(resume):
                hint = ' (a dangling link: its target %s is gone)' % os.readlink(resume) if osp.islink(resume) else ''
                raise FileNotFoundError('-c/--continue: checkpoint not found: %s%s' % (resume, hint))
            self.resume(resume)
            self._check_start_iter(resume)
            return
        if self.ctx.is_main:   # leftovers of a save killed by kill -9 / the OOM killer
            remove_stale_temporaries(self.cfg.OUTPUT_DIR, self.log)
        if not auto and self.ctx.is_main:   # --no-auto-resume: keep the old run's checkpoints, never overwrite
            move_checkpoints_aside(self.cfg.OUTPUT_DIR, self.log)
        loaded = {}
        last = auto_resume_path(last, auto, self.ctx.is_main, self.log, loaded)
        if not last and self.ctx.is_main:   # from scratch: an old metrics.jsonl is not this run's
            set_aside_metrics_log(self.cfg.OUTPUT_DIR, self.log)
        if last:
            self.resume(last, loaded.get('state'))
            self._check_start_iter(last)
        elif self.cfg.MODEL.WEIGHT:
            load_model_weights(self.model, self.cfg.MODEL.WEIGHT, strict=False, log=self.log, cfg=self.cfg)
        elif self.cfg.MODEL.PRETRAINED:
            self.load_pretrained(self.cfg.MODEL.PRETRAINED)

    def _check_start_iter(self, path):
        """A checkpoint at MAX_ITER: nothing to train, said plainly (exit 0); past it: an error (it used to log
        "training finished: -2 iterations" and exit 0)."""
        max_iter = int(self.solver.MAX_ITER)
        if self.start_iter > max_iter:
            raise ValueError('%s is at iteration %d, past the effective SOLVER.MAX_ITER %d of this run: nothing to '
                             'train. Raise SOLVER.MAX_ITER to continue it, resume an earlier iter-N.pth with -c, or '
                             'start a new run with --no-auto-resume' % (path, self.start_iter, max_iter))
        if self.start_iter == max_iter:
            self.log.info('%s is at iteration %d = SOLVER.MAX_ITER: this run has already finished, nothing to '
                          'train (raise SOLVER.MAX_ITER to train longer, or --no-auto-resume to start over)',
                          path, max_iter)

    def load_pretrained(self, source):
        """ImageNet init from ``source`` (path or URL) via ``model.load_pretrained(source) -> LoadReport``
        (:class:`cvpack.protocols.PretrainedInit`).

        build_model never reads MODEL.PRETRAINED (test.py, resumes and MODEL.WEIGHT runs needed no download).
        Rank 0 loads first (a URL lands in the torch hub cache), then the other ranks read the cache; a
        failure on rank 0 stops every rank (the outcome is broadcast, nobody waits in a barrier).
        """
        if not isinstance(self.model, PretrainedInit):
            raise ValueError('%s: MODEL.PRETRAINED is set (%s) but %s has no ImageNet initialisation '
                             '(no load_pretrained); set MODEL.PRETRAINED None, or MODEL.WEIGHT for a full checkpoint'
                             % (self.cfg.EXP_NAME, source, type(self.model).__name__))
        fn = self.model.load_pretrained
        report, error = None, None
        if self.ctx.is_main:
            try:
                self._fetch_pretrained(source)
                report = fn(source)
            except Exception as exc:  # re-raised below, after the other ranks know
                error = exc
        if not comm.broadcast_object(error is None):
            if error is not None:
                raise error
            raise RuntimeError('rank 0 failed to load MODEL.PRETRAINED %s (see its log)' % source)
        if not self.ctx.is_main:
            report = fn(source)
        if hasattr(report, 'loaded') and not report.loaded:   # another network's file: say so, don't train
            raise CheckpointError(source, 'MODEL.PRETRAINED: no tensor of this file was loaded into %s (%s)'
                                  % (type(self.model).__name__, report.summary()))
        self.log.info('ImageNet init from %s: %s', source,
                      report.summary() if hasattr(report, 'summary') else report)

    def _fetch_pretrained(self, source):
        """Download a MODEL.PRETRAINED URL into the torch hub cache (rank 0, before the model reads it), so
        that a failed download (offline, firewall) says which weights, and what to do instead of a URLError."""
        if not is_url(source):
            return
        cache, by_hand = url_cache_path(str(source)), hand_placed_path(str(source))
        name = osp.basename(by_hand)
        if not osp.isfile(cache):
            self.log.info('downloading the ImageNet weights of MODEL.PRETRAINED %s to %s', source, cache)
        try:
            resolve_source(source)
        except CheckpointError as e:
            why = e.reason.split('; download it by hand')[0]   # (resolve_source's own hint is replaced below)
            raise CheckpointError(source, 'MODEL.PRETRAINED: the ImageNet weights could not be fetched (%s). '
                                  'Offline? Download the file on a machine with internet and pass its local '
                                  'path (MODEL.PRETRAINED /path/to/%s) or copy it to %s; or train from a random '
                                  "initialisation with MODEL.PRETRAINED ''" % (why, name, by_hand)) from None

    # ------------------------------------------------------------------ data
    def build_loader(self):
        s, ctx = self.solver, self.ctx
        n = self.accumulate   # the sampler counts micro-batches: the same index stream for any ACCUMULATE
        sampler = IterationBasedSampler(len(self.dataset), s.IMS_PER_GPU, s.MAX_ITER * n, self.start_iter * n,
                                        ctx.rank, ctx.world_size, seed=int(self.cfg.SEED))
        if self.cfg.DATALOADER.ASPECT_RATIO_GROUPING and isinstance(self.dataset, AspectRatioGrouped):
            # Detection (GCPose): one aspect-ratio group per batch, still resumable (see GroupedIterationSampler).
            from ..data.samplers import GroupedIterationSampler
            sampler = GroupedIterationSampler(sampler, self.dataset.aspect_ratio_flags())
        self.sampler = sampler   # its state_dict goes into the checkpoints
        # A private generator: the DataLoader draws its worker base seed from it, not from the global torch
        # RNG, so the global stream (dropout, augmentation with num_workers=0) is the same with or without resume.
        # Seeded from (SEED, rank, start iteration) through a SeedSequence (no collisions between ranks and
        # resume points): the workers' RNGs (torch.initial_seed() = base seed + worker id, from which
        # TopDownDataset and _seed_worker seed numpy) differ after a resume instead of replaying iteration 0.
        gen = torch.Generator()
        words = np.random.SeedSequence([int(self.cfg.SEED), ctx.rank, self.start_iter]).generate_state(2)
        gen.manual_seed(int(words[0]) << 31 ^ int(words[1]))
        workers = int(self.cfg.DATALOADER.NUM_WORKERS)
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=workers, collate_fn=self.collate_fn,
            worker_init_fn=_seed_worker, generator=gen, pin_memory=ctx.device.type == 'cuda',
            persistent_workers=False)

    # ------------------------------------------------------------------ loop
    def step(self, batches, iteration):
        """One optimizer step over the micro-batches ``batches`` (a list of SOLVER.ACCUMULATE collated batches,
        or one batch); returns the rank-averaged loss terms (floats, the mean over the micro-batches).

        Each micro-batch's loss is scaled by 1/N, so N micro-batches of B/N samples give the gradient of one
        batch of B (the losses are means over samples); DDP all-reduces only on the last one (``no_sync``).
        """
        if isinstance(batches, dict):
            batches = [batches]
        n = len(batches)
        self.optimizer.zero_grad(set_to_none=True)
        terms = {}
        for i, batch in enumerate(batches):
            skip_sync = i < n - 1 and self.ddp is not self.model
            with self.ddp.no_sync() if skip_sync else contextlib.nullcontext():
                total, reduced = self._forward(batch, iteration)
                self.scaler.scale(total / n).backward()
            for k, v in reduced.items():
                terms[k] = terms.get(k, 0.0) + float(v) / n
        clip = self.cfg.SOLVER.CLIP_GRAD_NORM
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()  # after optimizer.step (docs/reference/defects.md R#7): iteration i trains with factor(i)
        return terms

    def _forward(self, batch, iteration):
        """Training forward of one (micro-)batch: (total loss, rank-averaged loss terms); stops on NaN/inf."""
        batch = to_device(batch, self.ctx.device, self.cfg.MODEL.CHANNELS_LAST)
        with autocast(self.amp, self.ctx.device):
            losses = self.ddp(batch['image'], batch)
        if not isinstance(losses, dict) or not losses:
            raise TypeError('model forward in training must return a non-empty dict of scalar losses, got %s'
                            % type(losses).__name__)
        losses = {k: v.float() for k, v in losses.items()}
        total = sum(losses.values())
        # Averaged over ranks before backward: every rank sees a non-finite value and stops together
        # (a lone rank raising would leave the others waiting in the gradient all-reduce).
        reduced = comm.reduce_dict(losses)
        bad = {k: float(v) for k, v in reduced.items() if not torch.isfinite(v)}
        if bad:
            local = {k: float(v) for k, v in losses.items() if not torch.isfinite(v)}
            raise FloatingPointError('non-finite loss at iteration %d: %s (on this rank: %s); stopping.'
                                     % (iteration, bad, local or 'finite'))
        return total, reduced

    def save(self, iteration):
        """Write ``iter-N.pth`` and re-point ``iter-last.pth`` (rank 0; collective).

        Refuses a state with NaN/inf in a parameter, buffer or optimizer tensor (rank 0's, the one saved; the
        verdict is broadcast so every rank stops together): a finite loss can still produce NaN weights
        (e.g. ``SOLVER.BASE_LR`` huge, a NaN gradient of a finite loss), and such a checkpoint linked as last
        made every later resume and test fail again. The previous checkpoint stays the last one.
        """
        state = self.state_dict(iteration)
        bad = None
        if self.ctx.is_main:
            bad = non_finite_tensors({'model': state['model'], 'optimizer': state['optimizer']})
        bad = comm.broadcast_object(bad)
        if bad:
            last = osp.join(self.cfg.OUTPUT_DIR, LAST_NAME)
            kept = ('%s still points to %s' % (LAST_NAME, osp.basename(osp.realpath(last))) if osp.exists(last)
                    else 'no checkpoint was written by this run')
            names = ', '.join(bad[:8]) + (' ...' if len(bad) > 8 else '')
            raise FloatingPointError(
                'iteration %d: NaN/inf in %d tensors of the model/optimizer state (%s), although the loss was '
                'finite: the training diverged (learning rate too high? a NaN gradient?). iter-%d.pth was NOT '
                'written; %s' % (iteration, len(bad), names, iteration, kept))
        if self.ctx.is_main:
            path = save_checkpoint(state, osp.join(self.cfg.OUTPUT_DIR, 'iter-%d.pth' % iteration))
            link_last(path)
            self.log.info('saved %s', path)
        comm.barrier()

    def evaluate(self, done):
        """Evaluation during training (TEST.EVAL_PERIOD, cvpack/engine/periodic_eval.py): metrics to the log,
        tensorboard (``val/<name>``) and metrics.jsonl; a new best value of TEST.BEST_METRIC rewrites
        OUTPUT_DIR/best.pth (a full training checkpoint of this iteration, written atomically). Collective."""
        metrics, improved = self.evaluator.run(self.model, done)
        self.tb.scalars({'val/' + k: v for k, v in metrics.items()}, done)
        if improved:
            state = self.state_dict(done)   # collective (RNG gather); the RNG is the training one again
            if self.ctx.is_main:
                path = save_checkpoint(state, osp.join(self.cfg.OUTPUT_DIR, BEST_NAME))
                self.log.info('new best %s %.4f: saved %s', self.evaluator.best['metric'],
                              self.evaluator.best['value'], path)
            comm.barrier()
        self.evaluator.record(metrics, done)   # last: the line marks the evaluation (and its best.pth) as done

    def release_ddp(self):
        """Drop the DDP wrapper; the model stays. Called before the process group is destroyed: DDP's reducer holds
        the group, which otherwise outlives ``destroy_process_group`` and dies at interpreter exit, where gloo's
        threads can abort a finished run (SIGABRT, "terminate called without an active exception"; about 1 run
        in 80 of a 2-rank gloo job, docs/ENGINE.md "Shutdown"). The other holder, torch.distributed.nn.functional's
        default arguments, is handled in cvpack/engine/launch.py."""
        self.ddp = self.model

    def train(self):
        s = self.solver
        self.ddp.train()
        period, log_period = int(s.CHECKPOINT_PERIOD), int(s.LOG_PERIOD)
        imgs_per_iter = int(s.IMS_PER_GPU) * self.ctx.world_size * self.accumulate
        loader_iter = iter(self.build_loader())
        if self.evaluator.pending:   # resumed at an iteration whose evaluation did not finish
            self.evaluate(self.evaluator.pending)
            self.evaluator.pending = None
        t_end, t_start, times = time.perf_counter(), time.perf_counter(), []
        for it in self._iterations(period):   # stops on SIGTERM (preemption.py)
            batches = [next(loader_iter) for _ in range(self.accumulate)]
            t_data = time.perf_counter() - t_end
            lr = self.optimizer.param_groups[0]['lr']
            losses = self.step(batches, it + 1)
            now = time.perf_counter()
            t_iter, t_end = now - t_end, now
            times = (times + [t_iter])[-log_period:]
            done = it + 1
            if done % log_period == 0 or done == s.MAX_ITER or done == self.start_iter + 1:
                self._log(done, lr, losses, t_data, t_iter, imgs_per_iter, sum(times) / len(times))
            if done % period == 0 or done == s.MAX_ITER:
                self.save(done)   # before the evaluation: an evaluation that fails loses no training
            if self.evaluator.due(done, s.MAX_ITER):
                self.evaluate(done)
                t_end = time.perf_counter()   # the evaluation is not data-loading time
        self.log.info('training finished: %d iterations in %.1f s', s.MAX_ITER - self.start_iter,
                      time.perf_counter() - t_start)
        self.tb.close()

    def _iterations(self, period):
        """``range(start_iter, MAX_ITER)`` that stops on SIGTERM: while it runs SIGTERM only sets a flag;
        before each next iteration the ranks combine their flags (collective), and when any rank got the
        signal every rank saves the iterations done so far (unless the loop just did) and raises
        :class:`Preempted` (exit 143). The previous handler is back when the loop ends or the generator is
        dropped (an exception in the loop body: once its traceback is freed) (docs/ENGINE.md "Preemption")."""
        max_iter = self.solver.MAX_ITER
        with StopSignal() as stop:
            for it in range(self.start_iter, max_iter):
                if it > self.start_iter and stop.requested():
                    if it % period:
                        self.save(it)
                    path = osp.join(self.cfg.OUTPUT_DIR, 'iter-%d.pth' % it)
                    self.log.warning('%s received (%s): stopped after iteration %d/%d, checkpoint %s; exiting '
                                     'with code %d, run the same command again to resume',
                                     stop.received or 'SIGTERM', 'on this rank' if stop.received else
                                     'on another rank', it, max_iter, path, PREEMPTED_EXIT_CODE)
                    self.tb.close()
                    raise Preempted(it, path)
                yield it

    def _log(self, done, lr, losses, t_data, t_iter, imgs_per_iter, mean_iter):
        eta = int(mean_iter * (self.solver.MAX_ITER - done))
        total = sum(losses.values())
        terms = ', '.join('%s: %.4f' % kv for kv in sorted(losses.items()))
        self.log.info('Iter: %d/%d, LR: %.3e, total_loss: %.4f, %s, data: %.3fs, compute: %.3fs, %.1f img/s, '
                      'ETA: %dh%02dmin', done, self.solver.MAX_ITER, lr, total, terms, t_data, t_iter - t_data,
                      imgs_per_iter / max(mean_iter, 1e-9), eta // 3600, eta % 3600 // 60)
        scalars = {'loss/' + k: v for k, v in losses.items()}
        scalars.update({'loss/total': total, 'lr': lr, 'time/data': t_data, 'time/compute': t_iter - t_data,
                        'time/iter': t_iter,
                        'images_per_s': imgs_per_iter / max(mean_iter, 1e-9), 'eta_hours': eta / 3600})
        self.tb.scalars(scalars, done)


def _log_setup(trainer, cfg, ctx):
    s = trainer.solver
    trainer.log.info('world size %d (rank %d, local rank %d), device %s, backend %s', ctx.world_size, ctx.rank,
                     ctx.local_rank, ctx.device, ctx.backend or 'none (single process)')
    trainer.log.info('effective solver: LR %.3e (BASE_LR %.3e, REFERENCE_WORLD_SIZE %s), MAX_ITER %d, '
                     'CHECKPOINT_PERIOD %d, WARMUP_ITERS %d, STEPS %s, %s, batch %d per process x %d accumulated '
                     '(SOLVER.ACCUMULATE) = %d per optimizer step',
                     s.LR, s.BASE_LR, s.REFERENCE_WORLD_SIZE, s.MAX_ITER, s.CHECKPOINT_PERIOD,
                     s.WARMUP_ITERS, list(s.STEPS), s.LR_SCHEDULER, s.IMS_PER_GPU, trainer.accumulate,
                     s.IMS_PER_GPU * ctx.world_size * trainer.accumulate)
    scaling = describe_scaling(cfg.SOLVER, s, ctx.world_size)
    if scaling:
        trainer.log.info(scaling)
    if 0 < s.MAX_ITER <= s.WARMUP_ITERS:
        trainer.log.warning('the warm-up (WARMUP_ITERS %d) is as long as the run (MAX_ITER %d) or longer: it is cut '
                            'at MAX_ITER, the LR rises from %.3e and never reaches %.3e (set SOLVER.WARMUP_ITERS to '
                            'shorten it)', s.WARMUP_ITERS, s.MAX_ITER, s.LR * s.WARMUP_FACTOR, s.LR)
    if trainer.evaluator.enabled:
        trainer.log.info('evaluation during training every %s (TEST.EVAL_PERIOD %d, in %ss: SOLVER.EPOCHS is %s)',
                         trainer.evaluator.describe(), trainer.evaluator.given, trainer.evaluator.unit,
                         'set' if trainer.evaluator.unit == 'epoch' else 'not set')


def wrap_ddp(model, device_ids, find_unused_parameters):
    """``DistributedDataParallel(model)`` with ``broadcast_buffers=False`` as the original: each rank keeps its own
    BN running statistics (no SyncBN by default) and rank 0's are the ones saved. torch 2.13 calls the argument
    deprecated, and its FutureWarning itself says to keep it until a replacement that skips the sync at
    construction exists (``forward_sync_buffers=False`` still syncs then): the warning is silenced here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='`broadcast_buffers` is deprecated', category=FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False,
                                                         find_unused_parameters=find_unused_parameters)


def train_main(cfg, build_model, argv=None, dataset_builder=None, collate_fn=None, predictor_builder=None,
               evaluator_builder=None):
    """Entry point of an exp's ``train.py`` (see docs/DESIGN.md "Engine").

    Args:
        cfg: the exp's config; command-line overrides are applied to a copy.
        build_model: ``build_model(cfg) -> nn.Module`` from the exp's network.py.
        argv: command line (default ``sys.argv[1:]``).
        dataset_builder: ``(cfg, split) -> Dataset``; default ``cvpack.data.build_dataset``.
        collate_fn: default ``cvpack.data.collate``.
        predictor_builder, evaluator_builder: for the evaluation during training (``TEST.EVAL_PERIOD``), as
            ``test_main``'s; default ``cvpack.inference.build_predictor`` / ``cvpack.evaluation.build_evaluator``.

    Returns:
        The trained model (unwrapped from DDP), on its device.
    """
    parser = train_parser(cfg.EXP_NAME)
    args, cfg = parse_with_config(parser, cfg, argv)
    if args.weights:   # --weights is MODEL.WEIGHT given another way: part of the resolution, before freezing
        cfg = clone(cfg)
        cfg.MODEL.WEIGHT = args.weights
        cfg = freeze(cfg)
    ctx = setup_distributed(cfg.MODEL.DEVICE, args.local_rank, dist_timeout(cfg))
    log_file = trainer = None
    try:
        if ctx.is_main:  # only rank 0 creates folders and files (docs/reference/defects.md R#27)
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        comm.barrier()
        setup_logger('cvpack.train', osp.join(cfg.OUTPUT_DIR, 'log.txt'), ctx.rank)
        log_file = osp.abspath(osp.join(cfg.OUTPUT_DIR, 'log.txt'))
        trainer = Trainer(cfg, build_model, ctx, dataset_builder, collate_fn, predictor_builder, evaluator_builder)
        _log_setup(trainer, cfg, ctx)
        trainer.evaluator.prepare()   # TEST.EVAL_PERIOD: val set, predictor, evaluator, TEST.BEST_METRIC, now
        if ctx.is_main:
            write_run_files(cfg, {'WORLD_SIZE': ctx.world_size, 'DEVICE': str(ctx.device),
                                  'SOLVER': dict(trainer.solver), 'EVAL_PERIOD_ITERS': trainer.evaluator.period})
        trainer.resume_or_load(args.resume, auto=not args.no_auto_resume)
        trainer.train()
        return trainer.model
    except BaseException as exc:
        if log_file:   # (not a handler left by an earlier run in this process)
            log_fatal(exc, log_file)
        if isinstance(exc, ConfigError):   # a setting found wrong at start-up (TEST.BEST_METRIC): exit 2, one line
            usage_error(parser, exc)       # (parser.error printed the usage block first: 4 lines)
        raise
    finally:
        if trainer is not None:
            trainer.release_ddp()   # before the group is destroyed (see release_ddp)
        cleanup_distributed()
