"""The quick start's planner (tools/quickstart.py): the schedule it picks fits the time budget for a given
measured step time, the precision comes from the CPU's public capability flags, and the toy schedule's
overrides scale the exp's blurs. No timing here: step times are given."""
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def qs(load_tool):
    return load_tool('quickstart')


@pytest.mark.parametrize('step_s', [0.12, 0.35, 1.0, 1.7, 4.1])
def test_plan_fits_the_budget_and_uses_it(qs, step_s):
    budget, spent, after = 480.0, 25.0, 70.0
    plan = qs.plan_schedule(step_s, budget, spent, after, batch=16, min_iters=20, max_iters=600)
    assert plan.fits and plan.batch == 16
    assert plan.total_s <= budget
    assert plan.total_s == pytest.approx(spent + after + plan.iters * step_s)
    # the most iterations that fit, unless capped
    assert plan.iters == 600 or spent + after + (plan.iters + 1) * step_s > budget


def test_plan_golden_numbers(qs):
    # 480 s budget, 25 s spent planning, 70 s after training: 385 s of 1.7 s steps = 226 iterations
    plan = qs.plan_schedule(1.7, 480.0, 25.0, 70.0, batch=16)
    assert plan.iters == 226 and plan.train_s == pytest.approx(384.2)
    assert qs.plan_schedule(0.1, 480.0, 25.0, 70.0, batch=16, max_iters=600).iters == 600   # fast CPU: capped


def test_plan_too_slow_says_it_does_not_fit(qs):
    plan = qs.plan_schedule(30.0, 480.0, 25.0, 70.0, batch=16, min_iters=20)
    assert plan.iters == 20 and not plan.fits and plan.total_s == pytest.approx(695.0)
    with pytest.raises(ValueError, match='step_s'):
        qs.plan_schedule(0.0, 480.0, 0.0, 0.0, batch=16)


def test_estimate_after(qs):
    m = {'setup': 4.0, 'first_step': 3.0, 'step': 1.0, 'infer': 0.8}
    # 3 process starts, the slower first step, 211 people x 2 (flip) x 0.05 s, 10 s of evaluation and drawing
    assert qs.estimate_after(m, 16) == pytest.approx(12.0 + 2.0 + 211 * 2 * 0.05 + 10.0)


def test_bf16_only_where_native(qs):
    assert qs.native_bf16({'avx2': True, 'avx512_f': False, 'amx_bf16': False, 'avx512_bf16': False}) is False
    assert qs.native_bf16({'avx512_f': True, 'avx512_bf16': True}) is True
    assert qs.native_bf16({'amx_bf16': True}) is True
    assert qs.native_bf16({'architecture': 'arm64', 'bf16': True}) is True
    assert isinstance(qs.native_bf16(), bool)                 # this CPU, through torch.cpu.get_capabilities()
    source = open(osp.join(REPO, 'tools', 'quickstart.py')).read()
    assert 'torch.ops.mkldnn' not in source                   # no private probe


def test_toy_overrides_scale_the_blurs(qs):
    exp = dict(zip(*[iter(qs.toy_overrides([256, 192]))] * 2))
    assert exp['DATASET.TRAIN.PROB_ROTATION'] == 0.0 and exp['DATASET.TRAIN.RANDOM_EXTENTION'] is False
    assert exp['OUTPUT_SHAPE'] == [64, 48] and exp['TEST.GAUSSIAN_KERNEL'] == 5
    assert [k[0] for k in exp['DATASET.TRAIN.GAUSSIAN_KERNELS']] == [15, 11, 9, 7, 5]   # the exp's own
    toy = dict(zip(*[iter(qs.toy_overrides([128, 96]))] * 2))
    assert toy['INPUT_SHAPE'] == [128, 96] and toy['OUTPUT_SHAPE'] == [32, 24]
    assert [k[0] for k in toy['DATASET.TRAIN.GAUSSIAN_KERNELS']] == [9, 7, 5, 5, 3] and toy['TEST.GAUSSIAN_KERNEL'] == 3
    with pytest.raises(ValueError, match='multiples of 32'):
        qs.toy_overrides([100, 96])


FAKE_TRAIN = '''import os, sys, time
out = sys.argv[1]
for i in (1, 2):
    open(os.path.join(out, 'iter-%d.pth' % i), 'w').close()
open(os.path.join(out, 'started'), 'w').close()
time.sleep(120)                       # a training that would overrun the budget
open(os.path.join(out, 'iter-3.pth'), 'w').close()
'''


def test_training_stops_at_its_last_checkpoint_past_the_deadline(qs, tmp_path):
    script = tmp_path / 'fake_train.py'
    script.write_text(FAKE_TRAIN)
    out = tmp_path / 'out'
    out.mkdir()
    # the deadline has passed already: the run is stopped as soon as a checkpoint exists
    done = qs.run_training([out], dict(qs.os.environ), str(out), deadline=0.0, poll_s=0.05,
                           script=str(script), cwd=str(tmp_path))
    assert done in (1, 2) and not (out / 'iter-3.pth').exists()
    assert qs.last_checkpoint(str(out)) == 2 and qs.last_checkpoint(str(tmp_path / 'none')) == 0


def test_training_without_deadline_runs_to_the_end_and_fails_loudly(qs, tmp_path):
    script = tmp_path / 'quick.py'
    script.write_text("import os, sys\nopen(os.path.join(sys.argv[1], 'iter-7.pth'), 'w').close()\n")
    assert qs.run_training([tmp_path], dict(qs.os.environ), str(tmp_path), script=str(script),
                           cwd=str(tmp_path)) == 7
    bad = tmp_path / 'bad.py'
    bad.write_text('raise SystemExit(3)\n')
    with pytest.raises(qs.StepFailed, match="step 'train' failed \\(exit code 3\\); its log: .*train.log"):
        qs.run_training([], dict(qs.os.environ), str(tmp_path), script=str(bad), cwd=str(tmp_path))
