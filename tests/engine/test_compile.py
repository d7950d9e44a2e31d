"""TEST.COMPILE: the compiled, frozen test forward gives the eager network's outputs (inductor on the CPU)."""
import json

import pytest
import torch

from cvpack.config import clone
from cvpack.engine import test_main as run_test_main
from cvpack.engine import train_main
from cvpack.inference.compile import compile_for_inference
from cvpack.tools.complexity import load_exp


@pytest.mark.slow
def test_compiled_res18_matches_eager(repo_root):
    """A real megvii network (Res18, 64x48 input): BN folded by freezing, same heatmaps to float rounding,
    for the compiled batch shape and for a second (smaller, last-batch) shape."""
    torch.manual_seed(0)
    _, model = load_exp(repo_root + '/projects/RSN/exps/Res18.coco',
                        ['MODEL.PRETRAINED', '', 'INPUT_SHAPE', '(64, 48)', 'OUTPUT_SHAPE', '(16, 12)'])
    for m in model.modules():   # non-trivial running statistics, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(3, 3, 64, 48)
    with torch.inference_mode():
        eager = model(x)
        compiled = compile_for_inference(model)
        torch.testing.assert_close(compiled(x), eager, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(compiled(x[:1]), eager[:1], rtol=1e-4, atol=1e-5)
    assert eager.shape == (3, 17, 16, 12) and eager.abs().max() > 0.1


def _test_runs(toy, cfg, out, flags):
    """Train the toy exp 2 iterations, then test it once per TEST.COMPILE flag; returns {flag: (scores, log)}."""
    kw = dict(dataset_builder=toy.dataset_builder, collate_fn=toy.collate)
    train_main(cfg, toy.build_model, argv=['OUTPUT_DIR', str(out), 'SOLVER.MAX_ITER', '2'], **kw)
    kw.update(predictor_builder=toy.predictor_builder, evaluator_builder=toy.evaluator_builder)
    runs = {}
    for flag in flags:
        test_dir = out / ('test_' + flag)
        argv = ['OUTPUT_DIR', str(out), 'TEST_DIR', str(test_dir), 'TEST.COMPILE', flag,
                'TEST.IMS_PER_GPU', '4']   # 7 samples: a batch of 4 and a last batch of 3
        assert run_test_main(cfg, toy.build_model, argv=argv, **kw)['count'] == 7
        runs[flag] = ([r['score'] for r in json.load(open(test_dir / 'results.json'))],
                      open(test_dir / 'test_log.txt').read())
    return runs


def test_test_main_with_compile(toy, toy_exp, tmp_path):
    """Through test_main on a top-down pipeline: the log says the forward is compiled and every score
    equals the eager run's."""
    cfg = clone(toy_exp[1])   # load_exp's cfg is frozen
    cfg.DATASET.PIPELINE = 'megvii'
    runs = _test_runs(toy, cfg, tmp_path / 'T', ('False', 'True'))
    assert 'TEST.COMPILE: torch.compile' in runs['True'][1] and 'TEST.COMPILE' not in runs['False'][1]
    assert runs['True'][0] == pytest.approx(runs['False'][0], rel=1e-5, abs=1e-6)
    assert len(set(runs['False'][0])) == 7


def test_compile_is_skipped_for_other_pipelines(toy, toy_exp, tmp_path):
    """A whole-image pipeline would recompile per image size: TEST.COMPILE is ignored with a warning."""
    cfg = clone(toy_exp[1])   # load_exp's cfg is frozen
    cfg.DATASET.PIPELINE = 'detection'
    runs = _test_runs(toy, cfg, tmp_path / 'D', ('True',))
    assert "TEST.COMPILE ignored" in runs['True'][1] and "'detection'" in runs['True'][1]
    assert 'torch.compile with inductor' not in runs['True'][1]
