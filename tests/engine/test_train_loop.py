"""In-process training/testing through train_main/test_main with the toy exp (single process, CPU)."""
import os
import os.path as osp
import shutil
import warnings

import pytest
import torch

from cvpack.engine import checkpoint as ck
from cvpack.engine import test_main as run_test_main
from cvpack.engine import train_main


class Recorder:
    """Dataset builder that records which train samples were read, in order."""

    def __init__(self, toy):
        self.toy, self.seen = toy, []

    def __call__(self, cfg, split):
        ds = self.toy.dataset_builder(cfg, split)
        get = ds.__getitem__

        def getitem(i):
            self.seen.append(i)
            return get(i)

        ds.__getitem__ = getitem
        return _Wrapped(ds)


class _Wrapped(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds.__getitem__(i)


def _train(toy, cfg, out, argv=(), builder=None):
    argv = list(argv) + ['OUTPUT_DIR', str(out)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = train_main(cfg, toy.build_model, argv=argv, dataset_builder=builder or toy.dataset_builder,
                           collate_fn=toy.collate)
    assert not [w for w in caught if 'lr_scheduler.step()' in str(w.message)]
    return model


def _assert_same_state(a, b):
    for key in ('model',):
        for k in a[key]:
            assert torch.allclose(a[key][k].float(), b[key][k].float(), atol=1e-6, rtol=0), k
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    for i in sa:
        assert torch.allclose(sa[i]['exp_avg'], sb[i]['exp_avg'], atol=1e-6, rtol=0)
    assert a['scheduler']['last_epoch'] == b['scheduler']['last_epoch']
    assert a['sampler'] == b['sampler']


def test_exact_resume(toy, toy_exp, tmp_path):
    _, cfg = toy_exp
    opts = ['SOLVER.MAX_ITER', '6', 'SOLVER.CHECKPOINT_PERIOD', '3']
    straight = Recorder(toy)
    _train(toy, cfg, tmp_path / 'A', opts, straight)
    a6 = ck.load_checkpoint(str(tmp_path / 'A' / 'iter-6.pth'))
    assert a6['iteration'] == 6 and a6['sampler']['iteration'] == 6
    assert osp.realpath(tmp_path / 'A' / 'iter-last.pth') == osp.realpath(tmp_path / 'A' / 'iter-6.pth')

    # explicit -c from the half-way checkpoint, into another folder
    resumed = Recorder(toy)
    _train(toy, cfg, tmp_path / 'B', ['-c', str(tmp_path / 'A' / 'iter-3.pth')] + opts, resumed)
    _assert_same_state(a6, ck.load_checkpoint(str(tmp_path / 'B' / 'iter-6.pth')))
    assert resumed.seen == straight.seen[len(straight.seen) - len(resumed.seen):]
    assert len(resumed.seen) == 3 * 2                   # 3 iterations of 2 samples, from where A stood

    # automatic resume from OUTPUT_DIR/iter-last.pth
    os.makedirs(tmp_path / 'C')
    shutil.copyfile(tmp_path / 'A' / 'iter-3.pth', tmp_path / 'C' / 'iter-3.pth')
    ck.link_last(str(tmp_path / 'C' / 'iter-3.pth'))
    _train(toy, cfg, tmp_path / 'C', opts)
    _assert_same_state(a6, ck.load_checkpoint(str(tmp_path / 'C' / 'iter-6.pth')))
    assert 'resumed from' in open(tmp_path / 'C' / 'log.txt').read()


def test_resume_without_rng_and_sampler_differs(toy, toy_exp, tmp_path):
    """Control: restarting from iteration 3 WITHOUT the RNG/sampler restore gives different weights,
    so the exact-resume test above can fail."""
    _, cfg = toy_exp
    opts = ['SOLVER.MAX_ITER', '6', 'SOLVER.CHECKPOINT_PERIOD', '3']
    _train(toy, cfg, tmp_path / 'A', opts)
    state = ck.load_checkpoint(str(tmp_path / 'A' / 'iter-3.pth'))
    state.pop('rng'), state.pop('sampler')
    state['iteration'] = 3
    os.makedirs(tmp_path / 'D')
    ck.save_checkpoint(state, str(tmp_path / 'D' / 'iter-3.pth'))
    _train(toy, cfg, tmp_path / 'D', ['-c', str(tmp_path / 'D' / 'iter-3.pth')] + opts)
    a6 = ck.load_checkpoint(str(tmp_path / 'A' / 'iter-6.pth'))
    d6 = ck.load_checkpoint(str(tmp_path / 'D' / 'iter-6.pth'))
    assert any(not torch.allclose(a6['model'][k].float(), d6['model'][k].float(), atol=1e-6) for k in a6['model'])


def test_non_finite_loss_stops_with_iteration(toy, toy_exp, tmp_path):
    _, cfg = toy_exp
    with pytest.raises(FloatingPointError, match=r"iteration 3: \{'loss_aux': nan\}"):
        _train(toy, cfg, tmp_path / 'N', ['MODEL.TOY_NAN_AT', '3'])
    assert not osp.exists(tmp_path / 'N' / 'iter-4.pth')


def test_missing_test_checkpoint_is_an_error(toy, toy_exp, tmp_path):
    _, cfg = toy_exp
    _train(toy, cfg, tmp_path / 'T')
    kw = dict(dataset_builder=toy.dataset_builder, predictor_builder=toy.predictor_builder,
              evaluator_builder=toy.evaluator_builder, collate_fn=toy.collate)
    with pytest.raises(FileNotFoundError, match=r'iter-7\.pth \(from -i 7\).*iter-4\.pth'):
        run_test_main(cfg, toy.build_model, argv=['-i', '7', 'OUTPUT_DIR', str(tmp_path / 'T')], **kw)
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        run_test_main(cfg, toy.build_model, argv=['--checkpoint', str(tmp_path / 'nothing.pth')], **kw)
    metrics = run_test_main(cfg, toy.build_model, argv=['-i', '4', 'OUTPUT_DIR', str(tmp_path / 'T')], **kw)
    assert metrics['count'] == 7 and metrics['ids'] == list(range(100, 107))
    assert osp.isfile(tmp_path / 'T' / 'test_dir' / 'results.json')
    assert 'ground-truth boxes' in open(tmp_path / 'T' / 'test_dir' / 'test_log.txt').read()


def test_metrics_json_names_a_url_checkpoint_as_given(toy, toy_exp, tmp_path, http_root):
    """test.py --checkpoint URL wrote metrics.json's checkpoint as osp.abspath(URL), a path that does not exist
    ('<cwd>/http:/127.0.0.1:PORT/w.pth'); the URL is kept as given."""
    import json
    _, cfg = toy_exp
    _train(toy, cfg, tmp_path / 'T', ['SOLVER.MAX_ITER', '1'])
    root, base = http_root
    shutil.copyfile(tmp_path / 'T' / 'iter-1.pth', root / 'w.pth')
    run_test_main(cfg, toy.build_model, argv=['--checkpoint', base + 'w.pth', 'OUTPUT_DIR', str(tmp_path / 'T')],
                  dataset_builder=toy.dataset_builder, predictor_builder=toy.predictor_builder,
                  evaluator_builder=toy.evaluator_builder, collate_fn=toy.collate)
    with open(tmp_path / 'T' / 'test_dir' / 'metrics.json') as f:
        assert json.load(f)['checkpoint'] == base + 'w.pth'


def test_weights_for_finetuning_accept_original_format(toy, toy_exp, tmp_path):
    _, cfg = toy_exp
    src = toy.build_model(cfg)
    torch.nn.init.constant_(src.head.bias, 3.0)
    torch.save({'model': {'module.' + k: v for k, v in src.state_dict().items()}}, str(tmp_path / 'orig.pth'))
    model = _train(toy, cfg, tmp_path / 'F', ['--weights', str(tmp_path / 'orig.pth'), 'SOLVER.MAX_ITER', '2',
                                             'SOLVER.BASE_LR', '0.0'])
    assert torch.allclose(model.head.bias, torch.full((2,), 3.0))      # loaded, then lr 0 keeps it


def test_amp_options_on_cpu(toy, toy_exp, tmp_path):
    _, cfg = toy_exp
    with pytest.raises(ValueError, match="'fp16' needs CUDA"):
        _train(toy, cfg, tmp_path / 'H', ['SOLVER.AMP', 'fp16'])
    torch.manual_seed(0)   # the trainer seeds with cfg.SEED + rank = 0, so this is its initial model
    init = toy.build_model(cfg)
    model = _train(toy, cfg, tmp_path / 'B16', ['SOLVER.AMP', 'bf16', 'MODEL.CHANNELS_LAST', 'True',
                                               'SOLVER.MAX_ITER', '2'])
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.allclose(model.conv.weight, init.conv.weight)           # it trained
    assert 'Iter: 2/2' in open(tmp_path / 'B16' / 'log.txt').read()


def test_resume_on_other_world_size_uses_current_lr(toy, toy_exp, tmp_path):
    """A checkpoint of a 2-process run at LR 2e-2 resumed by 1 process at LR 1e-2: the current effective LR
    wins (the loaded optimizer/scheduler state used to keep the checkpoint's base LR), with a warning."""
    _, cfg = toy_exp
    _train(toy, cfg, tmp_path / 'A', ['SOLVER.CHECKPOINT_PERIOD', '3', 'SOLVER.BASE_LR', '2e-2'])
    state = ck.load_checkpoint(str(tmp_path / 'A' / 'iter-3.pth'))
    assert state['optimizer']['param_groups'][0]['initial_lr'] == pytest.approx(2e-2)
    state['sampler']['world_size'] = state['world_size'] = 2
    ck.save_checkpoint(state, str(tmp_path / 'two.pth'))
    _train(toy, cfg, tmp_path / 'B', ['-c', str(tmp_path / 'two.pth'), 'SOLVER.BASE_LR', '1e-2'])
    b4 = ck.load_checkpoint(str(tmp_path / 'B' / 'iter-4.pth'))
    assert b4['optimizer']['param_groups'][0]['initial_lr'] == pytest.approx(1e-2)
    assert b4['scheduler']['base_lrs'] == pytest.approx([1e-2])
    log = open(tmp_path / 'B' / 'log.txt').read()
    # megvii_linear, warm-up 1, 4 iterations: iteration 4 trains with factor(3) = 1 - 2/3 of 1e-2
    assert 'Iter: 4/4, LR: 3.333e-03' in log
    assert 'from a 2-process checkpoint' in log and 'current effective one, 1.000e-02' in log


def test_resume_with_other_optimizer_settings(toy, toy_exp, tmp_path):
    """Resuming an Adam checkpoint with SOLVER.OPTIMIZER SGD ended in "KeyError: 'momentum'" at the first step, no
    file named; with SOLVER.WEIGHT_DECAY 0.5 it trained on with the checkpoint's 1e-05 without a word."""
    from cvpack.safe_load import CheckpointError
    _, cfg = toy_exp
    _train(toy, cfg, tmp_path / 'A', ['SOLVER.MAX_ITER', '2'])
    ckpt = str(tmp_path / 'A' / 'iter-2.pth')
    with pytest.raises(CheckpointError, match=r'iter-2\.pth: its optimizer/scheduler state does not fit .* another '
                                              r"optimizer: its parameter group 0 has no dampening, momentum, nesterov"):
        _train(toy, cfg, tmp_path / 'B', ['-c', ckpt, 'SOLVER.OPTIMIZER', 'SGD'])
    _train(toy, cfg, tmp_path / 'C', ['-c', ckpt, 'SOLVER.WEIGHT_DECAY', '0.5'])
    assert ck.load_checkpoint(str(tmp_path / 'C' / 'iter-4.pth'))['optimizer']['param_groups'][0]['weight_decay'] == 0.5
    assert ("resuming %s with the optimizer settings of the current config, not the checkpoint's: weight_decay "
            "1e-05 -> 0.5" % ckpt) in open(tmp_path / 'C' / 'log.txt').read()


def test_resume_switching_adam_and_adamw_warns_with_an_older_torchs_state(toy, toy_exp, tmp_path):
    """Checkpoints record the optimizer's class: a resume from Adam's state with SOLVER.OPTIMIZER AdamW is warned even
    when the saved groups lack decoupled_weight_decay (an older torch's, where Adam and AdamW had the same keys)."""
    _, cfg = toy_exp
    _train(toy, cfg, tmp_path / 'A', ['SOLVER.MAX_ITER', '2'])
    ckpt = str(tmp_path / 'A' / 'iter-2.pth')
    state = ck.load_checkpoint(ckpt)
    assert state['optimizer_class'] == 'Adam'
    for group in state['optimizer']['param_groups']:
        del group['decoupled_weight_decay']
    ck.save_checkpoint(state, ckpt)
    _train(toy, cfg, tmp_path / 'B', ['-c', ckpt, 'SOLVER.OPTIMIZER', 'AdamW'])
    assert ("resuming %s with the optimizer settings of the current config, not the checkpoint's: optimizer Adam -> "
            "AdamW" % ckpt) in open(tmp_path / 'B' / 'log.txt').read()
    assert ck.load_checkpoint(str(tmp_path / 'B' / 'iter-4.pth'))['optimizer_class'] == 'AdamW'


def test_resume_with_another_data_order_warns(toy, toy_exp, tmp_path):
    """A resume with SOLVER.IMS_PER_GPU, SEED or SOLVER.ACCUMULATE changed (or another train set) continues another
    sample stream (ACCUMULATE 1 -> 2 at iteration 2 starts the sampler at micro-batch 4, skipping 2): it said nothing,
    as it says for another world size. Now a warning names each change; an unchanged resume stays quiet."""
    _, cfg = toy_exp
    _train(toy, cfg, tmp_path / 'A', ['SOLVER.MAX_ITER', '2'])
    ckpt = str(tmp_path / 'A' / 'iter-2.pth')
    _train(toy, cfg, tmp_path / 'B', ['-c', ckpt, 'SOLVER.ACCUMULATE', '2', 'SOLVER.IMS_PER_GPU', '1', 'SEED', '3',
                                      'DATASET.TOY_TRAIN_LEN', '12'])
    assert ("resuming %s with another data order than the checkpoint's (SOLVER.IMS_PER_GPU 2 -> 1, SEED 0 -> 3, "
            "train set length 10 -> 12, SOLVER.ACCUMULATE 1 -> 2)" % ckpt) in open(tmp_path / 'B' / 'log.txt').read()
    _train(toy, cfg, tmp_path / 'C', ['-c', ckpt])
    log = open(tmp_path / 'C' / 'log.txt').read()
    assert 'resumed from %s at iteration 2' % ckpt in log and 'another data order' not in log


def test_pretrained_loaded_by_the_trainer_only_from_scratch(toy, toy_exp, tmp_path):
    """MODEL.PRETRAINED: read by the trainer (model.load_pretrained) when starting from scratch; never on
    resume, with MODEL.WEIGHT / --weights, or by test.py; a model without load_pretrained is an error."""
    _, cfg = toy_exp
    src = toy.build_model(cfg)
    torch.nn.init.constant_(src.head.bias, 3.0)
    torch.save(src.state_dict(), str(tmp_path / 'imagenet.pth'))
    lr0 = ['SOLVER.BASE_LR', '0.0', 'SOLVER.MAX_ITER', '2', 'SOLVER.CHECKPOINT_PERIOD', '1']
    model = _train(toy, cfg, tmp_path / 'P', lr0 + ['MODEL.PRETRAINED', str(tmp_path / 'imagenet.pth')])
    assert torch.allclose(model.head.bias, torch.full((2,), 3.0))      # loaded, then lr 0 keeps it
    assert 'ImageNet init from %s: loaded' % (tmp_path / 'imagenet.pth') in open(tmp_path / 'P' / 'log.txt').read()

    missing = ['MODEL.PRETRAINED', str(tmp_path / 'absent.pth')]
    os.remove(str(tmp_path / 'P' / 'iter-2.pth'))
    ck.link_last(str(tmp_path / 'P' / 'iter-1.pth'))
    _train(toy, cfg, tmp_path / 'P', lr0 + missing)                     # auto-resume: the file is not read
    _train(toy, cfg, tmp_path / 'W', ['--weights', str(tmp_path / 'imagenet.pth')] + lr0 + missing)
    kw = dict(dataset_builder=toy.dataset_builder, predictor_builder=toy.predictor_builder,
              evaluator_builder=toy.evaluator_builder, collate_fn=toy.collate)
    run_test_main(cfg, toy.build_model, argv=['OUTPUT_DIR', str(tmp_path / 'P')] + missing, **kw)
    with pytest.raises(FileNotFoundError, match='absent.pth'):          # from scratch it is read
        _train(toy, cfg, tmp_path / 'S', lr0 + missing)

    class NoInit(toy.ToyNet):
        load_pretrained = None                                           # e.g. RSN: no ImageNet weights

    with pytest.raises(ValueError, match='toy.exp: MODEL.PRETRAINED is set .*NoInit has no ImageNet init'):
        train_main(cfg, lambda c: NoInit(), argv=lr0 + missing + ['OUTPUT_DIR', str(tmp_path / 'R')],
                   dataset_builder=toy.dataset_builder, collate_fn=toy.collate)


def test_test_py_checks_the_evaluators_ground_truth_before_inference(toy, toy_exp, tmp_path):
    """An evaluator whose ground truth is bad (GroundTruthCheck) stops test.py before a single batch is predicted:
    it used to run the whole inference, then fail in the evaluator."""
    _, cfg = toy_exp
    _train(toy, cfg, tmp_path / 'T')
    predicted = []

    class BadTruth:
        def check_ground_truth(self):
            raise ValueError('val.json: annotation id 7 has no area')

        def __call__(self, instances, output_dir):
            raise AssertionError('not reached')

    def predictor_builder(c):
        inner = toy.predictor_builder(c)

        def predict(model, batch):
            predicted.append(len(batch['image']))
            return inner(model, batch)
        return predict
    kw = dict(dataset_builder=toy.dataset_builder, predictor_builder=predictor_builder,
              evaluator_builder=lambda c: BadTruth(), collate_fn=toy.collate)
    with pytest.raises(ValueError, match='val.json: annotation id 7 has no area'):
        run_test_main(cfg, toy.build_model, argv=['-i', '4', 'OUTPUT_DIR', str(tmp_path / 'T')], **kw)
    assert predicted == []
    kw['evaluator_builder'] = toy.evaluator_builder   # the same run with good truth predicts every sample
    assert run_test_main(cfg, toy.build_model, argv=['-i', '4', 'OUTPUT_DIR', str(tmp_path / 'T')], **kw)['count'] == 7
    assert sum(predicted) == 7
