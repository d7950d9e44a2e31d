"""Evaluation during training (TEST.EVAL_PERIOD) through RSN's real Res18.coco train.py on the shipped COCO subset:
metrics.jsonl, best.pth, resume keeping the best-so-far, and exact resume with the evaluation on."""
import json
import os
import os.path as osp
import shutil

import pytest

from cvpack.engine import checkpoint as ck
from tests.engine.real_runs import copy_as_last, launcher, model_diff, res18_opts, run_train


def _opts(coco_subset, out, *extra):
    # the default box source: the shipped detection file (4 val images), so each evaluation is a few crops
    return res18_opts(coco_subset, out, 'DATALOADER.NUM_WORKERS', '0', 'TEST.EVAL_PERIOD', '2',
                      'TEST.IMS_PER_GPU', '8', 'TEST.FLIP', 'False', *extra)


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_eval_best_and_exact_resume(repo_root, coco_subset, sub_env, tmp_path):
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    a = tmp_path / 'A'
    out = run_train(exp, sub_env, launcher(1), _opts(coco_subset, a))
    lines = _jsonl(a / 'metrics.jsonl')
    assert [r['iteration'] for r in lines] == [2, 4]
    assert {'AP', 'AP50', 'AR'} <= set(lines[0])
    assert 'eval at iteration 2: AP ' in out and 'people on 4 images of the 96 annotated' in out
    # best.pth: a full checkpoint of the first iteration with the highest AP, identical to that iter-N.pth
    best_it = max(lines, key=lambda r: (r['AP'], -r['iteration']))['iteration']
    best = ck.load_checkpoint(str(a / 'best.pth'))
    assert best['iteration'] == best_it
    assert best['best'] == {'metric': 'AP', 'value': max(r['AP'] for r in lines), 'iteration': best_it}
    assert model_diff(str(a / 'best.pth'), str(a / ('iter-%d.pth' % best_it))) == 0
    # iter-N.pth is saved before the evaluation of iteration N: its best-so-far is the evaluations before N
    assert ck.load_checkpoint(str(a / 'iter-4.pth'))['best'] == {'metric': 'AP', 'value': lines[0]['AP'],
                                                                 'iteration': 2}

    # Interrupted at 2 and resumed, with a best-so-far no evaluation can beat (AP 2.0): the resumed run keeps it
    # (no best.pth written), drops nothing of iteration 2's metrics line, evaluates 4 again, and trains exactly.
    b = tmp_path / 'B'
    os.makedirs(b)
    state = ck.load_checkpoint(str(a / 'iter-2.pth'))
    assert state['best'] is None   # saved before the first evaluation
    state['best'] = {'metric': 'AP', 'value': 2.0, 'iteration': 2}
    ck.save_checkpoint(state, str(b / 'iter-2.pth'))
    ck.link_last(str(b / 'iter-2.pth'))
    with open(b / 'metrics.jsonl', 'w') as f:   # a line of iteration 4 left by a run killed before its save
        f.write(json.dumps(lines[0]) + '\n' + json.dumps(dict(lines[1], AP=-1)) + '\n')
    out = run_train(exp, sub_env, launcher(1), _opts(coco_subset, b))
    assert 'best so far: AP 2.0000 at iteration 2' in out
    assert not osp.exists(b / 'best.pth')
    assert ck.load_checkpoint(str(b / 'iter-4.pth'))['best'] == {'metric': 'AP', 'value': 2.0, 'iteration': 2}
    assert _jsonl(b / 'metrics.jsonl') == lines
    assert model_diff(str(a / 'iter-4.pth'), str(b / 'iter-4.pth')) == 0


def test_no_auto_resume_moves_best_and_metrics(tmp_path):
    for name in ('iter-2.pth', 'best.pth', 'metrics.jsonl'):
        (tmp_path / name).write_text('x')
    dest = ck.move_checkpoints_aside(str(tmp_path))
    assert sorted(os.listdir(dest)) == ['best.pth', 'iter-2.pth', 'metrics.jsonl']
    assert not any(osp.exists(tmp_path / n) for n in ('best.pth', 'metrics.jsonl'))


def test_choose_best_metric_and_trim(tmp_path):
    from cvpack.engine.periodic_eval import choose_best_metric, trim_metrics_log
    assert choose_best_metric('', {'AP': 0.1, 'AR': 0.2}) == 'AP'
    assert choose_best_metric('', {'Head': 0.1, 'Mean': 0.2}) == 'Mean'   # MPII PCKh table
    assert choose_best_metric('AR', {'AP': 0.1, 'AR': 0.2}) == 'AR'
    with pytest.raises(KeyError, match="'APx' is not a metric of this evaluator; it gives \\['AP', 'AR'\\]"):
        choose_best_metric('APx', {'AP': 0.1, 'AR': 0.2})
    path = tmp_path / 'metrics.jsonl'
    path.write_text('{"iteration": 2, "AP": 0.1}\n{"iteration": 4, "AP": 0.2}\n{"iteration": 6, "A')
    assert trim_metrics_log(str(path), 4) == 1
    assert path.read_text() == '{"iteration": 2, "AP": 0.1}\n{"iteration": 4, "AP": 0.2}\n'
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize('metric', ['score', 'neg_score'])
def test_best_checkpoint_is_the_best_evaluation(toy, toy_exp, metric):
    """Toy exp in-process, an evaluation and a checkpoint every iteration: best.pth is iter-K.pth of the K with the
    highest metric (score and -score: one of them improves after the first evaluation)."""
    from cvpack.engine import train_main
    exp, cfg = toy_exp
    out = osp.join(exp, 'out-' + metric)
    train_main(cfg, toy.build_model, argv=['OUTPUT_DIR', out, 'TENSORBOARD_DIR', 'None', 'SOLVER.CHECKPOINT_PERIOD',
                                           '1', 'TEST.EVAL_PERIOD', '1', 'TEST.BEST_METRIC', metric],
               dataset_builder=toy.dataset_builder, collate_fn=toy.collate, predictor_builder=toy.predictor_builder,
               evaluator_builder=toy.evaluator_builder)
    lines = _jsonl(osp.join(out, 'metrics.jsonl'))
    values = [r[metric] for r in lines]
    assert [r['iteration'] for r in lines] == [1, 2, 3, 4] and len(set(values)) == 4
    k = lines[values.index(max(values))]['iteration']
    best = ck.load_checkpoint(osp.join(out, 'best.pth'))
    assert best['iteration'] == k and best['best'] == {'metric': metric, 'value': max(values), 'iteration': k}
    assert model_diff(osp.join(out, 'best.pth'), osp.join(out, 'iter-%d.pth' % k)) == 0


@pytest.mark.slow
def test_eval_period_counts_epochs_in_epoch_based_presets(repo_root, coco_subset, sub_env, tmp_path):
    """HSRNet (Simple Baselines preset, SOLVER.EPOCHS set) through its real train.py: TEST.EVAL_PERIOD 2 means every
    2 epochs. 86 annotated train people at batch 48 = 2 steps per epoch; 3 epochs = 6 steps: evaluations after step 4
    (epoch 2) and step 6 (the last), not after every second step."""
    exp = osp.join(repo_root, 'projects', 'HSRNet', 'exps', 'hsrnet59.256x192.coco')
    out = tmp_path / 'out'
    opts = ['DATASET.ROOT', coco_subset, 'OUTPUT_DIR', str(out), 'MODEL.PRETRAINED', '', 'DATALOADER.NUM_WORKERS',
            '0', 'INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]', 'SOLVER.IMS_PER_GPU', '48', 'SOLVER.EPOCHS',
            '3', 'SOLVER.STEP_EPOCHS', '[2]', 'SOLVER.CHECKPOINT_EPOCHS', '3', 'TEST.EVAL_PERIOD', '2', 'TEST.FLIP',
            'False', 'TEST.IMS_PER_GPU', '64', 'TENSORBOARD_DIR', 'None']
    log = run_train(exp, sub_env, launcher(1), opts)
    assert 'MAX_ITER 6, CHECKPOINT_PERIOD 6,' in log
    assert 'evaluation during training every 2 epoch(s) = 4 iterations (TEST.EVAL_PERIOD 2, in epochs' in log
    assert [r['iteration'] for r in _jsonl(out / 'metrics.jsonl')] == [4, 6]
    with open(out / 'config.json') as f:
        assert json.load(f)['_RUNTIME']['EVAL_PERIOD_ITERS'] == 4


def test_eval_period_iters_follows_the_schedule_unit():
    from cvpack.engine.periodic_eval import eval_period_iters
    from cvpack.solver import resolve_solver
    from cvpack.config import base_config

    def solver(**kw):   # every SOLVER key with its preset default, then the test's values
        s = base_config('.').SOLVER
        s.update(BASE_LR=1e-3, IMS_PER_GPU=8, MAX_ITER=100, CHECKPOINT_PERIOD=10, WARMUP_ITERS=0, STEPS=[50],
                 REFERENCE_WORLD_SIZE=None, **kw)
        return s
    epochs = resolve_solver(solver(EPOCHS=4, ACCUMULATE=2), world_size=2, dataset_len=100)  # 4 steps/epoch
    assert eval_period_iters(3, epochs) == (12, 'epoch')
    assert eval_period_iters(3, resolve_solver(solver(EPOCHS=None), 2, 100)) == (3, 'iteration')
    assert eval_period_iters(0, epochs) == (0, 'epoch')


@pytest.mark.slow
def test_unknown_best_metric_is_a_usage_error_before_training(repo_root, coco_subset, sub_env, tmp_path):
    """RSN's real train.py: TEST.BEST_METRIC checked against the evaluator's metric_names() at start-up (it failed
    at the first evaluation, after the training time was spent): exit 2, one line listing the valid names, no
    training iteration, no checkpoint."""
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    out = tmp_path / 'out'
    log = run_train(exp, sub_env, launcher(1), _opts(coco_subset, out, 'TEST.BEST_METRIC', 'APx'), expect_rc=2)
    assert log.strip().splitlines()[-1].endswith(
        "error: TEST.BEST_METRIC 'APx' is not a metric of this evaluator; it gives ['AP', 'AP50', 'AP75', 'APl', "
        "'APm', 'AR', 'AR50', 'AR75', 'ARl', 'ARm']")
    assert 'Traceback' not in log and 'Iter: ' not in log and 'usage: ' not in log   # one line, not the usage
    assert sorted(os.listdir(out)) == ['log.txt', 'tb_dir']   # no checkpoint, no config.json, no metrics.jsonl


@pytest.mark.parametrize('key, value', [('TEST.DET_FILE', 'det_json/nope.json'),
                                        pytest.param('DATASET.VAL_ANN', 'annotations/nope.json',
                                                     marks=pytest.mark.slow)])
def test_missing_val_file_fails_before_training(repo_root, coco_subset, sub_env, tmp_path, key, value):
    """A val annotation or detection file that does not exist, with TEST.EVAL_PERIOD on: the run stops at start-up
    (the val set is built before iteration 1) naming the key and the file, before any iteration or checkpoint."""
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    out = tmp_path / 'out'
    log = run_train(exp, sub_env, launcher(1), _opts(coco_subset, out, key, value), expect_rc=1)
    assert 'FileNotFoundError: %s (%s): file not found' % (key, osp.join(coco_subset, value)) in log
    assert 'Iter: ' not in log and not [n for n in os.listdir(out) if n.endswith('.pth')]


@pytest.mark.slow
def test_ground_truth_the_evaluator_refuses_fails_before_training(repo_root, coco_subset, sub_env, tmp_path):
    """A val annotation file without 'area': the val set loads it (it needs no area) but the COCO evaluator
    (pycocotools) refuses it; the evaluator checks its ground truth at start-up, naming file, annotation and field."""
    with open(osp.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')) as f:
        data = json.load(f)
    for ann in data['annotations']:
        ann.pop('area')
    gt = tmp_path / 'no_area.json'
    gt.write_text(json.dumps(data))
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    out = tmp_path / 'out'
    log = run_train(exp, sub_env, launcher(1), _opts(coco_subset, out, 'DATASET.VAL_ANN', str(gt)), expect_rc=1)
    assert 'ValueError: %s: annotation id %d has no area' % (gt, data['annotations'][0]['id']) in log
    assert 'Iter: ' not in log and not [n for n in os.listdir(out) if n.endswith('.pth')]


def _failing_evaluator(toy, call):
    """The toy evaluator, raising at its ``call``-th evaluation."""
    calls = []

    def builder(cfg):
        inner = toy.evaluator_builder(cfg)

        def evaluate(instances, output_dir):
            calls.append(1)
            if len(calls) == call:
                raise RuntimeError('evaluator failed on purpose')
            return inner(instances, output_dir)
        return evaluate
    return builder


def _toy_train(toy, cfg, out, evaluator_builder=None, *extra):
    from cvpack.engine import train_main
    argv = ['OUTPUT_DIR', str(out), 'TENSORBOARD_DIR', 'None', 'SOLVER.CHECKPOINT_PERIOD', '2', 'TEST.EVAL_PERIOD', '2',
            'TEST.BEST_METRIC', 'score'] + list(extra)
    train_main(cfg, toy.build_model, argv=argv,
               dataset_builder=toy.dataset_builder, collate_fn=toy.collate, predictor_builder=toy.predictor_builder,
               evaluator_builder=evaluator_builder or toy.evaluator_builder)


def test_checkpoint_saved_before_a_failing_evaluation(toy, toy_exp, tmp_path):
    """A checkpoint and an evaluation due at iteration 4: the checkpoint is written first, so an evaluator that
    raises loses no training (iter-4.pth exists; it did not, the evaluation ran first). Resumed with a working
    evaluator, the run does the unfinished evaluation of iteration 4 first: metrics.jsonl and best.pth are those
    of a run that never failed."""
    exp, cfg = toy_exp
    ref, out = tmp_path / 'ref', tmp_path / 'out'
    _toy_train(toy, cfg, ref)
    with pytest.raises(RuntimeError, match='evaluator failed on purpose'):
        _toy_train(toy, cfg, out, _failing_evaluator(toy, 2))
    assert ck.load_checkpoint(str(out / 'iter-4.pth'))['iteration'] == 4
    assert model_diff(str(out / 'iter-4.pth'), str(ref / 'iter-4.pth')) == 0
    assert [r['iteration'] for r in _jsonl(out / 'metrics.jsonl')] == [2]
    _toy_train(toy, cfg, out)
    assert 'the evaluation of iteration 4 did not finish (no line in metrics.jsonl)' in (out / 'log.txt').read_text()
    assert _jsonl(out / 'metrics.jsonl') == _jsonl(ref / 'metrics.jsonl')
    assert ck.load_checkpoint(str(out / 'best.pth'))['best'] == ck.load_checkpoint(str(ref / 'best.pth'))['best']


@pytest.mark.parametrize('metric', ['score', 'neg_score'])
def test_resume_counts_the_evaluation_of_its_checkpoint(toy, toy_exp, tmp_path, metric):
    """iter-2.pth is saved before the evaluation of iteration 2, so its best-so-far misses it: a run resumed from
    it takes that evaluation from metrics.jsonl (not evaluated again), and keeps the best an uninterrupted run keeps
    (score / neg_score: for one of them iteration 2 is the best, and best.pth must not move to 4)."""
    exp, cfg = toy_exp
    ref, out = tmp_path / 'ref', tmp_path / 'out'
    _toy_train(toy, cfg, ref, None, 'TEST.BEST_METRIC', metric)
    lines = _jsonl(ref / 'metrics.jsonl')
    assert ck.load_checkpoint(str(ref / 'iter-2.pth'))['best'] is None
    copy_as_last(str(ref / 'iter-2.pth'), str(out), 'iter-2.pth')
    (out / 'metrics.jsonl').write_text(json.dumps(lines[0]) + '\n')
    _toy_train(toy, cfg, out, _failing_evaluator(toy, 2), 'TEST.BEST_METRIC', metric)   # one evaluation: 4
    assert _jsonl(out / 'metrics.jsonl') == lines
    best = ck.load_checkpoint(str(ref / 'best.pth'))['best']
    assert ck.load_checkpoint(str(out / 'iter-4.pth'))['best'] == ck.load_checkpoint(str(ref / 'iter-4.pth'))['best']
    if best['iteration'] == 2:
        assert not osp.exists(out / 'best.pth')
    else:
        assert ck.load_checkpoint(str(out / 'best.pth'))['best'] == best


def test_a_rank_that_cannot_build_the_val_set_stops_every_rank(monkeypatch, tmp_path):
    """prepare() is collective: rank 0 built its parts, rank 1 did not (a file missing on its node): rank 0 raises
    too, naming rank 1 and its error, instead of waiting for it in the first all-reduce."""
    from types import SimpleNamespace
    from cvpack.config import base_config
    from cvpack.engine import periodic_eval as pe
    cfg = base_config(str(tmp_path))
    cfg.TEST.EVAL_PERIOD = 2
    ev = pe.PeriodicEvaluator(cfg, SimpleNamespace(is_main=True, world_size=2), {'EPOCHS': None}, None, None)
    monkeypatch.setattr(ev, '_build', lambda: None)
    monkeypatch.setattr(pe.comm, 'all_gather_object',
                        lambda obj: [obj, 'FileNotFoundError: TEST.DET_FILE (/x/d.json): file not found'])
    with pytest.raises(RuntimeError, match=r'rank 1 could not build its val set / predictor / evaluator: '
                                           r'FileNotFoundError: TEST.DET_FILE \(/x/d.json\): file not found'):
        ev.prepare()


def test_a_nan_metric_is_never_the_best(toy, toy_exp):
    """An evaluation whose TEST.BEST_METRIC is NaN became the first best, and NaN > x is false: best.pth stayed at
    that evaluation for the rest of the run. Now NaN is never a best: the best is the highest finite value."""
    from cvpack.engine import train_main
    values = iter([float('nan'), 0.3, float('nan'), 0.2])

    def evaluator_builder(cfg):
        def evaluate(instances, output_dir):
            return {'quality': next(values)}
        return evaluate

    exp, cfg = toy_exp
    out = osp.join(exp, 'out-nan')
    train_main(cfg, toy.build_model, argv=['OUTPUT_DIR', out, 'TENSORBOARD_DIR', 'None', 'SOLVER.CHECKPOINT_PERIOD',
                                           '1', 'TEST.EVAL_PERIOD', '1', 'TEST.BEST_METRIC', 'quality'],
               dataset_builder=toy.dataset_builder, collate_fn=toy.collate, predictor_builder=toy.predictor_builder,
               evaluator_builder=evaluator_builder)
    best = ck.load_checkpoint(osp.join(out, 'best.pth'))
    assert best['iteration'] == 2 and best['best'] == {'metric': 'quality', 'value': 0.3, 'iteration': 2}
    log = open(osp.join(out, 'log.txt')).read()
    assert 'eval at iteration 1: TEST.BEST_METRIC quality is nan: never a best' in log
    assert 'no best quality yet' in log and 'best quality 0.3000 (iteration 2)' in log


def test_a_nan_best_from_an_older_checkpoint_is_beaten_by_any_finite_value():
    """A checkpoint written before NaN was refused as a best may carry best.value NaN; after resuming, nothing beat
    it (x > NaN is false) and best.pth stayed frozen."""
    from cvpack.engine.periodic_eval import _beats
    assert _beats(0.1, {'value': float('nan')}) and _beats(0.1, None) and _beats(0.3, {'value': 0.2})
    assert not _beats(float('nan'), None) and not _beats(float('inf'), {'value': 0.2})
    assert not _beats(0.2, {'value': 0.3}) and not _beats(float('nan'), {'value': float('nan')})


def test_table_counts_are_not_metrics(toy, toy_exp):
    """An evaluator declaring its metrics (MetricNames) whose table also counts records (PCKh's ``records``,
    ``records_skipped``): the counts went into metrics.jsonl and the 'eval at iteration' line as metrics
    ('records 5.0000'). Only the declared names are metrics now."""
    from cvpack.engine import train_main

    class Counting:
        def metric_names(self):
            return ['quality']

        def __call__(self, instances, output_dir):
            return {'quality': 0.5, 'records': 5, 'records_skipped': 1, 'head_source': 'head_segment'}

    exp, cfg = toy_exp
    out = osp.join(exp, 'out-counts')
    train_main(cfg, toy.build_model, argv=['OUTPUT_DIR', out, 'TENSORBOARD_DIR', 'None', 'SOLVER.CHECKPOINT_PERIOD',
                                           '2', 'TEST.EVAL_PERIOD', '2', 'TEST.BEST_METRIC', 'quality'],
               dataset_builder=toy.dataset_builder, collate_fn=toy.collate, predictor_builder=toy.predictor_builder,
               evaluator_builder=lambda cfg: Counting())
    assert _jsonl(osp.join(out, 'metrics.jsonl')) == [{'iteration': 2, 'quality': 0.5},
                                                      {'iteration': 4, 'quality': 0.5}]
    log = open(osp.join(out, 'log.txt')).read()
    assert 'eval at iteration 2: quality 0.5000; best quality 0.5000 (iteration 2)' in log and 'records' not in log


def test_test_summary_prints_counts_as_integers():
    """test.py's metric line: PCKh's record counts printed as 'records 5.0000'; now integers, metrics 4 decimals."""
    import logging

    from cvpack.engine.tester import _log_summary
    lines = []

    class Grab(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger('test_summary_counts')
    log.addHandler(Grab())
    log.setLevel(logging.INFO)
    _log_summary({'Mean': 0.9, 'Mean@0.1': 0.25, 'records': 5, 'records_skipped': 1, 'head_source': 'x',
                  'per_joint': [1.0], 'flag': True}, 'm.json', log)
    assert lines == ['metrics: Mean 0.9000, Mean@0.1 0.2500, records 5, records_skipped 1 (written to m.json)']
