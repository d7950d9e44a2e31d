"""A fresh start into an OUTPUT_DIR that still holds another run's metrics.jsonl (its checkpoints deleted by hand,
not moved by --no-auto-resume): a later resume must not take that run's line as the evaluation of its checkpoint."""
import json
import os.path as osp

import pytest

from cvpack.engine import checkpoint as ck
from tests.engine.test_eval_during_training import _failing_evaluator, _jsonl, _toy_train


def test_a_stale_metrics_line_is_not_taken_for_the_resumed_evaluation(toy, toy_exp, tmp_path):
    exp, cfg = toy_exp
    ref, out = tmp_path / 'ref', tmp_path / 'out'
    _toy_train(toy, cfg, ref)
    lines = _jsonl(ref / 'metrics.jsonl')
    out.mkdir()
    (out / 'metrics.jsonl').write_text(json.dumps({'iteration': 2, 'score': 1e9}) + '\n')   # the old run's
    with pytest.raises(RuntimeError, match='evaluator failed on purpose'):
        _toy_train(toy, cfg, out, _failing_evaluator(toy, 1))       # the evaluation of iteration 2 fails
    _toy_train(toy, cfg, out)                                        # resumed from iter-2.pth
    assert [r for r in _jsonl(out / 'metrics.jsonl') if r['score'] != 1e9] == lines
    assert osp.exists(out / 'best.pth')
    assert ck.load_checkpoint(str(out / 'best.pth'))['best'] == ck.load_checkpoint(str(ref / 'best.pth'))['best']
