"""Config overrides, the -log link, resolved-config copies and load_exp isolation."""
import json
import os
import os.path as osp

import pytest

from cvpack.config import base_config, config_main, merge_from_list
from cvpack.engine.utils import resolve_cfg
from cvpack.exp import load_exp


def test_merge_from_list_keeps_types(tmp_path):
    cfg = base_config(str(tmp_path))
    merge_from_list(cfg, ['SOLVER.BASE_LR', '1', 'SOLVER.MAX_ITER', '12', 'MODEL.SYNC_BN', 'True',
                          'SOLVER.STEPS', '[3, 5]', 'MODEL.DEVICE', 'cpu', 'MODEL.WEIGHT', '/x/y.pth'])
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)   # int text into a float key
    assert cfg.SOLVER.MAX_ITER == 12 and isinstance(cfg.SOLVER.MAX_ITER, int)
    assert cfg.MODEL.SYNC_BN is True
    assert list(cfg.SOLVER.STEPS) == [3, 5]
    assert cfg.MODEL.DEVICE == 'cpu' and cfg.MODEL.WEIGHT == '/x/y.pth'


def test_merge_from_list_rejects_unknown_and_odd(tmp_path):
    cfg = base_config(str(tmp_path))
    with pytest.raises(KeyError, match='SOLVER.BASE_RL'):
        merge_from_list(cfg, ['SOLVER.BASE_RL', '1e-3'])
    with pytest.raises(ValueError, match='pairs'):
        merge_from_list(cfg, ['SOLVER.BASE_LR'])


def test_output_dir_override_moves_derived_dirs(tmp_path):
    cfg = base_config(str(tmp_path / 'e'))
    new = resolve_cfg(cfg, ['OUTPUT_DIR', str(tmp_path / 'out')])
    assert new.TEST_DIR == str(tmp_path / 'out' / 'test_dir')
    assert new.TENSORBOARD_DIR == str(tmp_path / 'out' / 'tb_dir')
    assert cfg.OUTPUT_DIR != new.OUTPUT_DIR   # the exp's own cfg is untouched


def test_config_main_log_links_output_dir(toy_exp):
    exp, cfg = toy_exp
    config_main(cfg, ['-log'])
    link = osp.join(exp, 'log')
    assert osp.islink(link) and osp.realpath(link) == osp.realpath(cfg.OUTPUT_DIR)
    assert osp.isdir(cfg.OUTPUT_DIR)


def test_load_exp_isolates_exps(toy, tmp_path):
    a = toy.write_exp(tmp_path, 'a.exp')
    b = toy.write_exp(tmp_path, 'b.exp')
    with open(osp.join(b, 'config.py'), 'a') as f:
        f.write('cfg.SOLVER.MAX_ITER = 99\n')
    cfg_a, model_a = load_exp(a, ['SOLVER.BASE_LR', '0.5'])
    cfg_b, _ = load_exp(b)
    assert cfg_a.SOLVER.MAX_ITER == 4 and cfg_b.SOLVER.MAX_ITER == 99   # no sys.modules['config'] clash
    assert cfg_a.SOLVER.BASE_LR == 0.5 and cfg_a.EXP_NAME == 'a.exp'
    assert type(model_a).__name__ == 'ToyNet'
    import sys
    assert 'config' not in sys.modules or not getattr(sys.modules['config'], '__file__', '').startswith(str(tmp_path))


def test_load_exp_missing_network(tmp_path, toy):
    exp = toy.write_exp(tmp_path)
    os.remove(osp.join(exp, 'network.py'))
    with pytest.raises(FileNotFoundError, match='network.py'):
        load_exp(exp)


def test_json_dump_of_resolved_config(toy_exp):
    from cvpack.engine.utils import write_run_files
    exp, cfg = toy_exp
    cfg = resolve_cfg(cfg, ['SOLVER.MAX_ITER', '7'])
    write_run_files(cfg, {'WORLD_SIZE': 1})
    data = json.load(open(osp.join(cfg.OUTPUT_DIR, 'config.json')))
    assert data['SOLVER']['MAX_ITER'] == 7 and data['_RUNTIME'] == {'WORLD_SIZE': 1}
    assert open(osp.join(cfg.OUTPUT_DIR, 'network.py')).read() == open(osp.join(exp, 'network.py')).read()


def test_merge_from_list_bool_none_case_insensitive(tmp_path):
    cfg = base_config(str(tmp_path))
    cfg.TEST.FLIP = True
    cfg.MODEL.PRETRAINED = 'https://example.org/r50.pth'
    merge_from_list(cfg, ['TEST.FLIP', 'false', 'MODEL.SYNC_BN', 'TRUE', 'MODEL.PRETRAINED', 'None',
                          'SOLVER.CLIP_GRAD_NORM', 'none', 'SOLVER.REFERENCE_WORLD_SIZE', '8'])
    assert cfg.TEST.FLIP is False and cfg.MODEL.SYNC_BN is True
    assert cfg.MODEL.PRETRAINED is None and cfg.SOLVER.CLIP_GRAD_NORM is None
    assert cfg.SOLVER.REFERENCE_WORLD_SIZE == 8
    merge_from_list(cfg, ['SOLVER.REFERENCE_WORLD_SIZE', 'NONE'])
    assert cfg.SOLVER.REFERENCE_WORLD_SIZE is None


@pytest.mark.parametrize('key,text', [('MODEL.SYNC_BN', 'flase'), ('MODEL.SYNC_BN', '1'),
                                      ('SOLVER.MAX_ITER', '12k'), ('SOLVER.BASE_LR', 'true'),
                                      ('SOLVER.BASE_LR', "'x'")])
def test_merge_from_list_rejects_unparsable_over_bool_or_number(tmp_path, key, text):
    cfg = base_config(str(tmp_path))
    with pytest.raises(ValueError, match=key.replace('.', r'\.')):
        merge_from_list(cfg, [key, text])


def test_preset_keys_read_by_the_code_are_defined(tmp_path, repo_root):
    """TEST.DARK_KERNEL (decode 'dark') and SOLVER.NESTEROV (SGD) exist, so overrides are accepted."""
    from cvpack.config import dark_kernel
    from cvpack.config.cpn import cpn_config
    from cvpack.config.megvii import megvii_config
    from cvpack.config.simple_baselines import simple_baselines_config
    from cvpack.decode.heatmap import decoder_kwargs
    assert dark_kernel([64, 48]) == 11 and dark_kernel([96, 72]) == 17
    assert megvii_config(str(tmp_path), dataset='COCO').TEST.DARK_KERNEL == 11
    assert cpn_config(str(tmp_path), input_shape=(384, 288)).TEST.DARK_KERNEL == 17
    sb = simple_baselines_config(str(tmp_path), input_shape=(384, 288))
    assert sb.TEST.DARK_KERNEL == 17 and 'OUTPUT_NUM' not in sb.MODEL   # simple baselines never read it
    for exp in ('projects/MSPN/exps/mspn.4xstg.384x288.coco', 'projects/RSN/exps/4xRSN50.384x288.coco'):
        cfg, _ = load_exp(osp.join(repo_root, exp), ['TEST.DECODER', 'dark'], build=False)
        assert cfg.TEST.DARK_KERNEL == 17
        assert decoder_kwargs(cfg) == ('dark', {'stride': (4.0, 4.0), 'kernel': 17})
    cfg = merge_from_list(megvii_config(str(tmp_path)), ['TEST.DARK_KERNEL', '7', 'SOLVER.NESTEROV', 'true'])
    assert cfg.TEST.DARK_KERNEL == 7 and cfg.SOLVER.NESTEROV is True


def test_config_main_log_prints_what_it_created(toy_exp, capsys):
    exp, cfg = toy_exp
    config_main(cfg, ['-log'])
    out = capsys.readouterr().out
    assert 'created output folder %s' % cfg.OUTPUT_DIR in out
    assert 'created link %s -> %s' % (osp.join(exp, 'log'), cfg.OUTPUT_DIR) in out
    config_main(cfg, ['-log'])
    out = capsys.readouterr().out
    assert 'output folder %s exists' % cfg.OUTPUT_DIR in out and 'created' not in out


def test_config_main_into_closed_pipe_is_quiet(toy_exp, monkeypatch):
    """``python config.py | head``: the reader has gone; printing must end quietly, not in BrokenPipeError."""
    import os
    import sys
    _, cfg = toy_exp
    read_fd, write_fd = os.pipe()
    os.close(read_fd)                                   # the reader (head) has exited
    out = os.fdopen(write_fd, 'w')
    monkeypatch.setattr(sys, 'stdout', out)
    assert config_main(cfg, []) is not None             # raised BrokenPipeError before the fix
    out.write('x' * 100000)
    out.flush()                                         # stdout now goes to /dev/null: no second error
    out.close()
