"""SOLVER.ACCUMULATE with the toy exp (1 process in-process, and its train.py in 2 gloo processes under torchrun):
N micro-batches of B/N per optimizer step train the same weights as one batch of B (a model without BatchNorm
or dropout), iterations/checkpoints/LR count optimizer steps, and a resumed accumulating run is exact.
The 2-process run also evaluates during training (toy evaluator: every val sample exactly once)."""
import json
import os
import os.path as osp

import pytest
import torch

from cvpack.engine import checkpoint as ck
from tests.engine.real_runs import launcher, run_train


def _run(toy, env, nproc, out, *opts):
    """Train a toy exp written in ``out`` (OUTPUT_DIR ``out/run``); returns rank 0's final parameters.
    1 process: train_main in this process (fast); 2: the exp's train.py under torchrun (gloo).
    Toy: ToyTrain of 10 samples, 4 optimizer steps, Adam, warm-up 1; TOY_PLAIN: no BatchNorm, no dropout."""
    exp = toy.write_exp(out)
    opts = ['MODEL.TOY_PLAIN', 'True', 'TENSORBOARD_DIR', 'None', 'SOLVER.CHECKPOINT_PERIOD', '2',
            'OUTPUT_DIR', osp.join(str(out), 'run')] + list(opts)
    if nproc == 1:
        from cvpack.engine import train_main
        from cvpack.exp import load_exp
        model = train_main(load_exp(exp, build=False)[0], toy.build_model, argv=opts,
                           dataset_builder=toy.dataset_builder, collate_fn=toy.collate)
        return {k: v.detach().clone() for k, v in model.named_parameters()}
    os.makedirs(_default_out(exp), exist_ok=True)   # (the toy train.py writes its parameters there)
    run_train(exp, env, launcher(nproc), opts)
    return torch.load(osp.join(_default_out(exp), 'params_rank0.pt'), weights_only=True)


def _default_out(exp):
    from cvpack.exp import load_exp
    return load_exp(exp, build=False)[0].OUTPUT_DIR


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize('nproc', [1, pytest.param(2, marks=pytest.mark.slow)])
def test_accumulate_equals_full_batch(toy, tmp_path, sub_env, nproc):
    full = _run(toy, sub_env, nproc, tmp_path / 'full', 'SOLVER.IMS_PER_GPU', '4')
    # (with 2 processes, also the evaluation during training, which must not change the training)
    evaluate = ['TEST.EVAL_PERIOD', '3', 'TEST.BEST_METRIC', 'unique'] if nproc == 2 else []
    acc = _run(toy, sub_env, nproc, tmp_path / 'acc', 'SOLVER.IMS_PER_GPU', '2', 'SOLVER.ACCUMULATE', '2',
               *evaluate)
    assert _max_diff(full, acc) < 2e-6                                              # fp32 rounding only
    if nproc == 1:   # and not by accident: micro-batches of 2 without accumulation train other weights
        assert _max_diff(full, _run(toy, sub_env, 1, tmp_path / 'half', 'SOLVER.IMS_PER_GPU', '2')) > 1e-4
    a4, f4 = (ck.load_checkpoint(str(tmp_path / d / 'run' / 'iter-4.pth')) for d in ('acc', 'full'))
    assert a4['iteration'] == 4 and a4['scheduler']['last_epoch'] == f4['scheduler']['last_epoch'] == 4
    assert a4['sampler']['iteration'] == 8 and a4['sampler']['batch_size'] == 2   # micro-batches drawn
    log = open(tmp_path / 'acc' / 'run' / 'log.txt').read()
    assert 'Iter: 4/4' in log and 'x 2 accumulated (SOLVER.ACCUMULATE) = %d per optimizer step' % (4 * nproc) in log
    if nproc == 1:   # exact resume of an accumulating run from iter-2
        res = tmp_path / 'res'
        os.makedirs(res / 'run')
        ck.save_checkpoint(ck.load_checkpoint(str(tmp_path / 'acc' / 'run' / 'iter-2.pth')),
                           str(res / 'run' / 'iter-2.pth'))
        ck.link_last(str(res / 'run' / 'iter-2.pth'))
        resumed = _run(toy, sub_env, 1, res, 'SOLVER.IMS_PER_GPU', '2', 'SOLVER.ACCUMULATE', '2')
        assert _max_diff(acc, resumed) == 0
    else:   # evaluation after iteration 3 (the period) and 4 (the last): 7 val samples over 2 ranks, each once
        run = tmp_path / 'acc' / 'run'
        lines = [json.loads(line) for line in open(run / 'metrics.jsonl')]
        assert [(r['iteration'], r['count'], r['unique']) for r in lines] == [(3, 7.0, 7.0), (4, 7.0, 7.0)]
        best = ck.load_checkpoint(str(run / 'best.pth'))
        assert best['best'] == {'metric': 'unique', 'value': 7.0, 'iteration': 3} and best['iteration'] == 3


def test_epoch_based_solver_counts_optimizer_steps():
    from easydict import EasyDict as edict
    from cvpack.config import base_config
    from cvpack.solver import resolve_solver
    s = base_config('.').SOLVER
    s.update(BASE_LR=1e-3, IMS_PER_GPU=8, EPOCHS=10, STEP_EPOCHS=[5], WARMUP_EPOCHS=1, CHECKPOINT_EPOCHS=2,
             CHECKPOINT_PERIOD=1, REFERENCE_WORLD_SIZE=None)
    # 1000 samples, 2 processes x 8 x ACCUMULATE 4 = 64 per optimizer step: ceil(1000 / 64) = 16 steps an epoch
    out = resolve_solver(edict(s, ACCUMULATE=4), 2, 1000)
    assert (out['ITERS_PER_EPOCH'], out['MAX_ITER'], out['STEPS'], out['WARMUP_ITERS'], out['CHECKPOINT_PERIOD']) \
        == (16, 160, [80], 16, 32)
    assert resolve_solver(s, 2, 1000)['ITERS_PER_EPOCH'] == 63    # ceil(1000 / 16) without accumulation
