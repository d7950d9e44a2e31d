"""TEST.COMPILE: the compiled, frozen test forward gives the eager network's outputs (inductor on the CPU)."""
import json

import pytest
import torch

from cvpack.engine import test_main as run_test_main
from cvpack.engine import train_main
from cvpack.inference.compile import compile_for_inference
from cvpack.tools.complexity import load_exp


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


def test_test_main_with_compile(toy, toy_exp, tmp_path):
    """Through test_main: the log says the forward is compiled and every score equals the eager run's."""
    _, cfg = toy_exp
    kw = dict(dataset_builder=toy.dataset_builder, collate_fn=toy.collate)
    train_main(cfg, toy.build_model, argv=['OUTPUT_DIR', str(tmp_path / 'T'), 'SOLVER.MAX_ITER', '2'], **kw)
    kw.update(predictor_builder=toy.predictor_builder, evaluator_builder=toy.evaluator_builder)
    scores = {}
    for compile_flag in ('False', 'True'):
        out = tmp_path / 'T' / ('test_' + compile_flag)
        argv = ['OUTPUT_DIR', str(tmp_path / 'T'), 'TEST_DIR', str(out), 'TEST.COMPILE', compile_flag,
                'TEST.IMS_PER_GPU', '4']   # 7 samples: a batch of 4 and a last batch of 3
        metrics = run_test_main(cfg, toy.build_model, argv=argv, **kw)
        assert metrics['count'] == 7
        scores[compile_flag] = [r['score'] for r in json.load(open(out / 'results.json'))]
        assert ('TEST.COMPILE' in open(out / 'test_log.txt').read()) == (compile_flag == 'True')
    assert scores['True'] == pytest.approx(scores['False'], rel=1e-5, abs=1e-6)
    assert len(set(scores['False'])) == 7
