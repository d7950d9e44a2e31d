"""Multi-node launch: two torchrun "nodes" on 127.0.0.1 (``--nnodes 2 --node_rank 0/1``, one gloo process each,
static rendezvous on a free local port) train and test a tiny Res18.coco exactly as one node with 2 processes:
the same losses at every iteration, the same parameters, the same results.json and metrics. (After 4 iterations
the model scores AP 0.0 on the 125 GT boxes, so results.json, every keypoint and score, is the real comparison.)"""
import json
import os.path as osp
import re
import subprocess

import pytest

from tests.engine.real_runs import TIMEOUT, free_port, launcher, model_diff, res18_opts, run_train


def _two_nodes(exp, env, script, args):
    port = free_port()
    procs = [subprocess.Popen(launcher(1, nnodes=2, node_rank=n, port=port) + [script] + args, cwd=exp, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in (0, 1)]
    outs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    for node, (p, text) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, 'node %d: exit %d\n%s' % (node, p.returncode, text[-3000:])
    return outs


def _losses(out_dir):
    log = open(osp.join(out_dir, 'log.txt')).read()
    return re.findall(r'Iter: (\d+)/\d+, LR: \S+, total_loss: (\S+), (.*?), data:', log)


def _test_opts(out):
    return ['-i', '4', 'TEST.USE_GT_BBOX', 'True', 'TEST.IMS_PER_GPU', '16'] + res18_opts(*out)


@pytest.mark.slow
def test_two_nodes_equal_one_node(repo_root, coco_subset, tmp_path, sub_env):
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    one, two = tmp_path / 'one_node', tmp_path / 'two_nodes'
    small = ('DATALOADER.NUM_WORKERS', '0')
    run_train(exp, sub_env, launcher(2), res18_opts(coco_subset, one, *small))
    _two_nodes(exp, sub_env, 'train.py', res18_opts(coco_subset, two, *small))
    assert 'world size 2' in open(two / 'log.txt').read()
    losses = _losses(one)
    assert [it for it, _, _ in losses] == ['1', '2', '3', '4'] and losses == _losses(two)
    assert model_diff(str(one / 'iter-4.pth'), str(two / 'iter-4.pth')) == 0

    subprocess.run(launcher(2) + ['test.py'] + _test_opts((coco_subset, one) + small), cwd=exp, env=sub_env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    _two_nodes(exp, sub_env, 'test.py', _test_opts((coco_subset, two) + small))
    m1, m2 = (json.load(open(d / 'test_dir' / 'metrics.json')) for d in (one, two))
    assert m1['num_instances'] == m2['num_instances'] == 125 and m1['metrics'] == m2['metrics']
    r1, r2 = (json.load(open(d / 'test_dir' / 'results.json')) for d in (one, two))
    assert len(r1) == 125 and r1 == r2
