"""LR schedules at hand-computed iterations, world-size scaling, epoch conversion and optimizers."""
import math
import warnings

import pytest
import torch

from cvpack.config import base_config
from cvpack.solver import LRFactor, build_lr_scheduler, build_optimizer, load_optimizer_state, resolve_solver


def _solver(**kw):
    s = base_config('.').SOLVER   # every SOLVER key with its preset default, then the test's values
    s.update(OPTIMIZER='Adam', BASE_LR=1.0, BETAS=(0.9, 0.999), MOMENTUM=0.9, WEIGHT_DECAY=1e-5,
              WEIGHT_DECAY_BIAS=None, IMS_PER_GPU=2, MAX_ITER=12, CHECKPOINT_PERIOD=6, LR_SCHEDULER='megvii_linear',
              WARMUP_FACTOR=0.1, WARMUP_ITERS=4, WARMUP_METHOD='linear', GAMMA=0.1, STEPS=(),
              REFERENCE_WORLD_SIZE=None)
    s.update(kw)
    return s


def _lrs_used(solver, n):
    """LR each optimizer.step() used, stepping the scheduler after the optimizer."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=solver.BASE_LR)
    sched = build_lr_scheduler(resolve_solver(solver, 1), opt)
    out = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(n):
            out.append(opt.param_groups[0]['lr'])
            p.grad = torch.ones(1)
            opt.step()
            sched.step()
    assert not [w for w in caught if 'lr_scheduler' in str(w.message)], [str(w.message) for w in caught]
    return out


def test_megvii_linear_matches_original_formula():
    # warm-up 0.1 + 0.9 * it / 4, then 1 - (it - 4) / (12 - 4); the first update uses factor(0) = 0.1
    lrs = _lrs_used(_solver(), 12)
    expected = [0.1, 0.325, 0.55, 0.775, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    assert lrs == pytest.approx(expected, abs=1e-12)


def test_multistep_with_warmup():
    lrs = _lrs_used(_solver(LR_SCHEDULER='multistep', WARMUP_ITERS=2, STEPS=(5, 8), GAMMA=0.1), 10)
    expected = [0.1, 0.55, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01]
    assert lrs == pytest.approx(expected, abs=1e-12)


def test_cosine_and_constant_warmup():
    lrs = _lrs_used(_solver(LR_SCHEDULER='cosine', WARMUP_ITERS=2, WARMUP_METHOD='constant', MAX_ITER=10), 10)
    assert lrs[:2] == pytest.approx([0.1, 0.1])
    assert lrs[2] == pytest.approx(1.0)
    assert lrs[6] == pytest.approx(0.5)                       # half way through the 8 decay iterations
    assert lrs[4] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_bad_schedule_names():
    with pytest.raises(ValueError, match='LR_SCHEDULER'):
        LRFactor('poly', 10)



@pytest.mark.parametrize('name', ['megvii_linear', 'cosine', 'multistep'])
def test_warmup_longer_than_the_run_is_cut(name):
    # SOLVER.MAX_ITER 2 over a 2400-iteration warm-up: both iterations (and the scheduler's final step) are
    # warm-up ones, 0.1 + 0.9 * it / 2400; the LR never reaches the base LR
    f = LRFactor(name, 2, warmup_iters=2400, warmup_factor=0.1)
    assert [f(i) for i in range(3)] == pytest.approx([0.1, 0.1 + 0.9 / 2400, 0.1 + 1.8 / 2400])
    # W == M: the step after the last iteration is the first after warm-up, no division by zero
    assert LRFactor(name, 10, warmup_iters=10)(10) == 1.0


def test_reference_world_size_scaling():
    s = _solver(BASE_LR=5e-4, MAX_ITER=96000, CHECKPOINT_PERIOD=2400, WARMUP_ITERS=2400, STEPS=(800,),
                REFERENCE_WORLD_SIZE=8)
    r2 = resolve_solver(s, 2)
    assert r2.LR == pytest.approx(1e-3)
    assert (r2.MAX_ITER, r2.CHECKPOINT_PERIOD, r2.WARMUP_ITERS, r2.STEPS) == (384000, 9600, 9600, [3200])
    r8 = resolve_solver(s, 8)
    assert r8.LR == pytest.approx(4e-3) and r8.MAX_ITER == 96000 and r8.WARMUP_ITERS == 2400
    none = resolve_solver(_solver(BASE_LR=5e-4), 4)
    assert none.LR == 5e-4 and none.MAX_ITER == 12
    assert s.MAX_ITER == 96000   # the config itself is not changed


def test_megvii_preset_scales_iterations_as_the_original_train_py(tmp_path):
    # the original's train.py: CHECKPOINT_PERIOD and MAX_ITER = int(x * 8 / num_gpu) (truncated, not rounded)
    from cvpack.config.megvii import megvii_config
    for dataset in ('COCO', 'MPII'):
        s = megvii_config(str(tmp_path), dataset=dataset).SOLVER
        assert s.SCALE_ROUNDING == 'floor'
        for w in (1, 2, 3, 4, 6, 7, 8, 13):
            r = resolve_solver(s, w)
            assert (r.MAX_ITER, r.CHECKPOINT_PERIOD) == (int(s.MAX_ITER * 8 / w), int(s.CHECKPOINT_PERIOD * 8 / w))
    s = megvii_config(str(tmp_path), dataset='COCO').SOLVER
    assert resolve_solver(s, 7).CHECKPOINT_PERIOD == 2742           # 2400 * 8 / 7 = 2742.86 (rounding gave 2743)
    assert resolve_solver(s, 3).MAX_ITER == 256000                  # 96000 * 8 / 3, exact
    assert resolve_solver(_solver(MAX_ITER=2400, REFERENCE_WORLD_SIZE=8), 7).MAX_ITER == 2743   # default 'round'


def test_epoch_based_conversion():
    s = _solver(EPOCHS=3, STEP_EPOCHS=(2,), IMS_PER_GPU=4, WARMUP_ITERS=0, LR_SCHEDULER='multistep')
    r = resolve_solver(s, 2, dataset_len=50)          # ceil(50 / 8) = 7 iterations per epoch
    assert (r.ITERS_PER_EPOCH, r.MAX_ITER, r.STEPS, r.CHECKPOINT_PERIOD) == (7, 21, [14], 7)
    with pytest.raises(ValueError, match='dataset length'):
        resolve_solver(s, 2)


def test_optimizers_and_bias_decay():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    adam = build_optimizer(_solver(), model, 0.01)
    assert len(adam.param_groups) == 1 and adam.param_groups[0]['weight_decay'] == 1e-5
    sgd = build_optimizer(_solver(OPTIMIZER='SGD', WEIGHT_DECAY_BIAS=0.0), model, 0.01)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]['momentum'] == 0.9
    groups = {g['weight_decay']: len(g['params']) for g in sgd.param_groups}
    assert groups == {1e-5: 1, 0.0: 3}     # conv weight decayed; conv bias, BN weight and bias not
    with pytest.raises(ValueError, match='OPTIMIZER'):
        build_optimizer(_solver(OPTIMIZER='Lamb'), model, 0.01)


def test_detectron2_weight_decay_norm_rule():
    """SOLVER.WEIGHT_DECAY_NORM set: Detectron2 v0.5 get_default_optimizer_params -- norm-layer weights decay by it,
    every parameter named 'bias' by WEIGHT_DECAY_BIAS (also a norm layer's: the override wins), the rest (a 2-D
    table too) by WEIGHT_DECAY."""
    table = torch.nn.Module()
    table.rel = torch.nn.Parameter(torch.zeros(3, 2))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.GroupNorm(2, 4),
                                torch.nn.LayerNorm(4), table)
    opt = build_optimizer(_solver(OPTIMIZER='SGD', WEIGHT_DECAY=1e-4, WEIGHT_DECAY_BIAS=2e-4, WEIGHT_DECAY_NORM=0.0),
                          model, 0.01)
    got = {id(p): g['weight_decay'] for g in opt.param_groups for p in g['params']}
    want = {'0.weight': 1e-4, '0.bias': 2e-4, '1.weight': 0.0, '1.bias': 2e-4, '2.weight': 0.0, '2.bias': 2e-4,
            '3.weight': 0.0, '3.bias': 2e-4, '4.rel': 1e-4}
    assert {n: got[id(p)] for n, p in model.named_parameters()} == want
    assert [g['weight_decay'] for g in opt.param_groups] == [1e-4, 2e-4, 0.0]     # first appearance


def test_gcpose_preset_does_not_decay_the_gcm_norm_weights(tmp_path):
    """Detectron2's SOLVER.WEIGHT_DECAY_NORM default 0.0: GCPose's GCM BatchNorm weights are not decayed, their
    biases and every other parameter are (1e-4); before, the preset decayed them all (defects.md F#13)."""
    from projects.GCPose.gcpose import add_gcpose_config, build_model
    from projects.GCPose.gcpose.preset import detection_config
    cfg = add_gcpose_config(detection_config(str(tmp_path / 'exp')))
    kh = cfg.MODEL.ROI_KEYPOINT_HEAD
    kh.CONV_DIM, kh.NUM_CONVS, kh.GCM_POSITIONS = 64, 4, [0, 2]     # narrow: the rule, not the size, is tested
    cfg.MODEL.BACKBONE = 'resnet18'
    model = build_model(cfg)
    opt = build_optimizer(cfg.SOLVER, model, 0.01)
    got = {id(p): g['weight_decay'] for g in opt.param_groups for p in g['params']}
    zero = sorted(n for n, p in model.named_parameters() if p.requires_grad and got[id(p)] == 0.0)
    assert zero == ['roi_heads.keypoint_head.gcms.%s.norm%d.weight' % (i, j) for i in '02' for j in (1, 2)]
    assert {got[id(p)] for n, p in model.named_parameters() if p.requires_grad and n not in zero} == {1e-4}


def _fused_run(name, fused, steps, resume_from=None, done=0):
    """Train a tiny model ``steps`` steps from seed 0 (after loading ``resume_from`` = (model, optimizer)
    state dicts when given, continuing the batch stream after ``done`` steps); returns (model, optimizer)."""
    torch.manual_seed(0)
    # No conv bias right before the BN: its gradient is rounding noise, which Adam would scale up to +-lr.
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 2, 1))
    opt = build_optimizer(_solver(OPTIMIZER=name, FUSED=fused, WEIGHT_DECAY=1e-2), model, 0.01)
    if resume_from is not None:
        model.load_state_dict(resume_from[0])
        load_optimizer_state(opt, resume_from[1])
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, 3, 5, 5, generator=g) for _ in range(done + steps)][done:]
    for x in batches:
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize('name', ['Adam', 'AdamW', 'SGD'])
def test_fused_optimizer_matches_the_per_tensor_update(name):
    """SOLVER.FUSED picks torch's fused kernel; three steps land where the per-tensor loop does."""
    (fused_model, fused_opt), (loop_model, loop_opt) = _fused_run(name, True, 3), _fused_run(name, False, 3)
    assert fused_opt.param_groups[0]['fused'] is True and not loop_opt.param_groups[0]['fused']
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['Adam', 'SGD'])
@pytest.mark.parametrize('saved_fused', [True, False])
def test_resume_across_optimizer_kernels(name, saved_fused):
    """A checkpoint of either kernel resumes the other: the run keeps its configured kernel, the step
    counters land where that kernel keeps them, and 2 + 2 steps equal 4 straight steps."""
    model, opt = _fused_run(name, saved_fused, 2)
    saved = (model.state_dict(), opt.state_dict())
    resumed_model, resumed = _fused_run(name, not saved_fused, 2, resume_from=saved, done=2)
    assert bool(resumed.param_groups[0]['fused']) is (not saved_fused)
    if name == 'Adam':
        step = resumed.state[resumed.param_groups[0]['params'][0]]['step']
        # fused kernels keep a float32 counter on the parameter's device; the loop a CPU float32 scalar
        assert step.dtype == torch.float32 and float(step) == 4.0
    straight_model, _ = _fused_run(name, not saved_fused, 4)
    for a, b in zip(resumed_model.parameters(), straight_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _stepped(solver):
    """(model, optimizer) after one step of a tiny model, the optimizer built from ``solver``."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 2, 1)
    opt = build_optimizer(solver, model, 0.01)
    model(torch.randn(1, 3, 2, 2)).square().mean().backward()
    opt.step()
    return model, opt


def test_resume_keeps_the_configs_optimizer_settings():
    """torch's load_state_dict replaces a group's settings with the saved ones: a resume with SOLVER.WEIGHT_DECAY 0.5
    and BETAS [0.5, 0.6] trained on with 1e-05 and (0.9, 0.999), and AdamW resumed from Adam's state trained as Adam
    (decoupled_weight_decay False), silently. The config's settings win; the differences are returned (warned)."""
    _, saved = _stepped(_solver())
    model, opt = _stepped(_solver(WEIGHT_DECAY=0.5, BETAS=(0.5, 0.6)))
    changed = load_optimizer_state(opt, saved.state_dict())
    group = opt.param_groups[0]
    assert (group['weight_decay'], tuple(group['betas'])) == (0.5, (0.5, 0.6))
    assert changed == ['weight_decay 1e-05 -> 0.5', 'betas (0.9, 0.999) -> (0.5, 0.6)']
    exp_avg = saved.state[saved.param_groups[0]['params'][0]]['exp_avg']     # the moments themselves are loaded
    torch.testing.assert_close(opt.state[model.weight]['exp_avg'], exp_avg, rtol=0, atol=0)
    _, adamw = _stepped(_solver(OPTIMIZER='AdamW'))
    assert load_optimizer_state(adamw, saved.state_dict()) == ['decoupled_weight_decay False -> True']
    assert adamw.param_groups[0]['decoupled_weight_decay'] is True
    _, same = _stepped(_solver())
    assert load_optimizer_state(same, saved.state_dict()) == []          # nothing changed: nothing to warn


@pytest.mark.parametrize('saved_name, name, missing', [('Adam', 'SGD', 'dampening, momentum, nesterov'),
                                                       ('SGD', 'Adam', 'amsgrad, betas, eps')])
def test_optimizer_state_of_another_optimizer_is_an_error(saved_name, name, missing):
    """Adam's state resumed with SOLVER.OPTIMIZER SGD loaded without a word and failed at the first step with
    "KeyError: 'momentum'" (SGD's settings replaced by Adam's); now a ValueError naming the missing settings."""
    _, saved = _stepped(_solver(OPTIMIZER=saved_name))
    _, opt = _stepped(_solver(OPTIMIZER=name))
    with pytest.raises(ValueError, match='written by another optimizer: its parameter group 0 has no %s, which this '
                                         "run's %s needs" % (missing, name)):
        load_optimizer_state(opt, saved.state_dict())


def test_original_unscaled_warmup_option():
    s = _solver(MAX_ITER=96000, CHECKPOINT_PERIOD=2400, WARMUP_ITERS=2400, REFERENCE_WORLD_SIZE=8,
                SCALE_WARMUP=False)
    r = resolve_solver(s, 4)
    assert (r.MAX_ITER, r.CHECKPOINT_PERIOD, r.WARMUP_ITERS) == (192000, 4800, 2400)


@pytest.mark.parametrize('name', ['Adam', 'AdamW', 'SGD'])
def test_a_group_key_the_saved_state_lacks_is_filled_not_refused(name):
    """Another optimizer was told from the set of group keys: a key a newer torch adds to the groups (simulated by
    one the current optimizer has and the saved groups lack) made every older checkpoint a ValueError. Only the
    settings that define the optimizer's kind are required now; the others come from the current optimizer."""
    _, saved = _stepped(_solver(OPTIMIZER=name))
    state = saved.state_dict()
    for group in state['param_groups']:
        del group['maximize'], group['differentiable'], group['weight_decay']
    model, opt = _stepped(_solver(OPTIMIZER=name))
    for group in opt.param_groups:
        group['future_torch_flag'] = False
    assert load_optimizer_state(opt, state) == []
    group = opt.param_groups[0]
    assert (group['maximize'], group['differentiable'], group['future_torch_flag']) == (False, False, False)
    assert group['weight_decay'] == 1e-5
    key = 'momentum_buffer' if name == 'SGD' else 'exp_avg'   # the saved state itself is loaded
    torch.testing.assert_close(opt.state[model.weight][key], saved.state[saved.param_groups[0]['params'][0]][key])


def _older_torch_state(name):
    """The state of a stepped ``name`` optimizer as a torch without ``decoupled_weight_decay`` saved it, where Adam's
    and AdamW's groups have the same keys."""
    _, saved = _stepped(_solver(OPTIMIZER=name))
    state = saved.state_dict()
    for group in state['param_groups']:
        del group['decoupled_weight_decay']
    return state


@pytest.mark.parametrize('saved_name, name, decoupled', [('Adam', 'AdamW', True), ('AdamW', 'Adam', False)])
def test_a_switch_between_adam_and_adamw_is_warned_without_the_decoupled_key(saved_name, name, decoupled):
    """An older torch's Adam and AdamW groups have the same keys: a resume switching SOLVER.OPTIMIZER between them was
    not warned (the decoupled_weight_decay change was warned only when the saved group had the key). The class the
    trainer records in the checkpoint (optimizer_class) tells them apart."""
    _, opt = _stepped(_solver(OPTIMIZER=name))
    assert load_optimizer_state(opt, _older_torch_state(saved_name), saved_name) == [
        'optimizer %s -> %s' % (saved_name, name)]
    assert opt.param_groups[0]['decoupled_weight_decay'] is decoupled   # the config's optimizer, as for any setting
    _, same = _stepped(_solver(OPTIMIZER=name))
    assert load_optimizer_state(same, _older_torch_state(name), name) == []
    _, adam = _stepped(_solver())   # nothing recorded (an older cvpack): taken for Adam, the original's optimizer
    assert load_optimizer_state(adam, _older_torch_state('AdamW')) == []
    _, adamw = _stepped(_solver(OPTIMIZER='AdamW'))   # ... so under AdamW the change cannot be ruled out
    assert load_optimizer_state(adamw, _older_torch_state('Adam')) == [
        'optimizer Adam or AdamW (the checkpoint records neither its optimizer class nor decoupled_weight_decay) '
        '-> AdamW']


def test_another_optimizer_names_the_recorded_class():
    _, saved = _stepped(_solver())
    _, opt = _stepped(_solver(OPTIMIZER='SGD'))
    with pytest.raises(ValueError, match=r"has no dampening, momentum, nesterov, which this run's SGD needs "
                                         r"\(SOLVER.OPTIMIZER Adam -> SGD\)"):
        load_optimizer_state(opt, saved.state_dict(), 'Adam')
