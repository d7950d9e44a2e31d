"""Heatmaps holding NaN/inf during an evaluation during training (TEST.EVAL_PERIOD): training stops (a model giving
such heatmaps has diverged) with an error naming the evaluation's iteration and the images, on every rank alike."""
import multiprocessing as mp
import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch

from cvpack.decode.heatmap import NonFiniteHeatmaps


def _nan_predictor(toy, fail=lambda call, rank: True):
    """The toy predictor, raising NonFiniteHeatmaps as TopDownPredictor does (image ids in the message and in
    ``image_ids``) when ``fail(call, rank)``; ``call`` counts this process's batches."""
    calls = []

    def builder(cfg):
        inner = toy.predictor_builder(cfg)

        def predict(model, batch):
            calls.append(1)
            if fail(len(calls), torch.distributed.get_rank() if torch.distributed.is_initialized() else 0):
                ids = [int(i) for i in batch['image_id']]
                err = NonFiniteHeatmaps('heatmaps hold NaN/inf in 2 of 4 maps (first: sample 0, joint 0): the model '
                                        'output is not finite; 1 of the 2 people of the batch: image %d' % ids[0], [0])
                err.image_ids = ids[:1]
                raise err
            return inner(model, batch)
        return predict
    return builder


def test_nan_heatmaps_in_a_training_evaluation_name_the_iteration_and_images(toy, toy_exp, tmp_path):
    """Before: the decoder's bare NonFiniteHeatmaps, nothing saying it came from the evaluation at iteration 4."""
    from cvpack.engine import train_main
    exp, cfg = toy_exp
    argv = ['OUTPUT_DIR', str(tmp_path / 'out'), 'TENSORBOARD_DIR', 'None', 'SOLVER.CHECKPOINT_PERIOD', '2',
            'TEST.EVAL_PERIOD', '2', 'TEST.BEST_METRIC', 'score']
    # 7 val samples, 2 per batch: 4 batches per evaluation; the 6th batch is the second evaluation's second
    predictor = _nan_predictor(toy, lambda call, rank: call == 6)
    with pytest.raises(NonFiniteHeatmaps) as err:
        train_main(cfg, toy.build_model, argv=argv, dataset_builder=toy.dataset_builder, collate_fn=toy.collate,
                   predictor_builder=predictor, evaluator_builder=toy.evaluator_builder)
    assert str(err.value).startswith('evaluation during training at iteration 4 (TEST.EVAL_PERIOD): rank 0 of 1: '
                                     'NonFiniteHeatmaps: heatmaps hold NaN/inf')
    assert 'image 102' in str(err.value) and err.value.image_ids == [102]
    assert 'NonFiniteHeatmaps: evaluation during training at iteration 4' in (tmp_path / 'out' / 'log.txt').read_text()


def _rank(rank, port, toy, out):
    """One of 2 gloo processes: run_inference where rank 1's prediction gives NaN heatmaps; ``out`` gets the
    exception's type name and message (or 'ok')."""
    from cvpack.config import base_config
    from cvpack.engine.tester import run_inference
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', init_method='tcp://127.0.0.1:%d' % port, rank=rank, world_size=2,
                                         timeout=timedelta(seconds=20))
    cfg = base_config('/tmp')
    cfg.TEST.IMS_PER_GPU = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    ctx = SimpleNamespace(rank=rank, world_size=2, is_main=rank == 0, device=torch.device('cpu'))
    try:
        run_inference(toy.ToyNet().eval(), toy.ToyVal(7), _nan_predictor(toy, lambda call, r: r == 1)(cfg), cfg,
                      ctx, toy.collate, progress=False, what='evaluation at iteration 6')
        out.put((rank, 'ok', ''))
    except Exception as exc:
        out.put((rank, type(exc).__name__, str(exc)))
    finally:
        torch.distributed.destroy_process_group()


def test_nan_heatmaps_on_one_rank_stop_every_rank_with_the_same_error(toy):
    """2 gloo processes, rank 1's heatmaps NaN: before, rank 0 waited in the gather of the predictions and failed
    with gloo's bare peer error once rank 1 had gone; now both raise the same NonFiniteHeatmaps naming rank 1."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = mp.get_context('fork')
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, toy, out)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = dict((r, (name, msg)) for r, name, msg in (out.get(timeout=60) for _ in procs))
    for p in procs:
        p.join(30)
    assert results[0] == results[1], results
    name, msg = results[0]
    assert name == 'NonFiniteHeatmaps', results
    assert msg.startswith('evaluation at iteration 6: rank 1 of 2: NonFiniteHeatmaps: heatmaps hold NaN/inf')
    assert 'image 104' in msg   # rank 1's shard: samples 4..6 (image ids 104..106)


class _NoStr(RuntimeError):
    def __str__(self):
        raise TypeError('__str__ returned a non-string')


def test_a_failure_whose_message_or_ids_cannot_travel_is_still_agreed_on(monkeypatch):
    """agree_on_failure sends the failure through all_gather_object (pickled): before, an exception whose str()
    raised, or whose image_ids did not pickle, made that rank fail alone inside agree_on_failure, before the gather,
    and the other ranks waited in it. The gather is simulated by a pickle round trip."""
    import pickle

    import numpy as np

    from cvpack.engine import tester
    monkeypatch.setattr(tester.comm, 'all_gather_object', lambda obj: [pickle.loads(pickle.dumps(obj))])
    err = _NoStr()
    with pytest.raises(_NoStr) as info:      # the failing rank raises its own error, not the str() failure
        tester.agree_on_failure(err, 'inference')
    assert info.value is err
    nan = NonFiniteHeatmaps('heatmaps hold NaN/inf', [0])
    nan.image_ids = [np.int64(104), 'img_7', (lambda: 0)]
    with pytest.raises(NonFiniteHeatmaps, match=r'^inference: rank 0 of 1: NonFiniteHeatmaps: heatmaps') as info:
        tester.agree_on_failure(nan, 'inference')
    assert info.value.image_ids[:2] == [104, 'img_7'] and type(info.value.image_ids[0]) is int
    assert tester._failure_summary(_NoStr())[:2] == ('_NoStr', '<str() of the _NoStr failed: TypeError>')
