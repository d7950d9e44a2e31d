"""Offline, a train.py whose MODEL.PRETRAINED is a URL (MSPN/HSRNet/GCPose defaults) stops with a message that says
the ImageNet weights could not be fetched and how to go on (a local file, or MODEL.PRETRAINED ''), not a raw
urllib traceback. The URL is a closed port of 127.0.0.1; the torch hub cache is an empty temporary folder."""
import hashlib
import os.path as osp
import socket

from tests.engine.real_runs import launcher, run_train


def _closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]     # closed again when the socket is: connections are refused


def test_pretrained_download_failure_says_what_to_do(repo_root, coco_subset, sub_env, tmp_path):
    exp = osp.join(repo_root, 'projects', 'MSPN', 'exps', 'mspn.2xstg.coco')
    url = 'http://127.0.0.1:%d/resnet50-0676ba61.pth' % _closed_port()
    env = dict(sub_env, TORCH_HOME=str(tmp_path / 'hub'))
    out = run_train(exp, env, launcher(1), [
        'DATASET.ROOT', coco_subset, 'OUTPUT_DIR', str(tmp_path / 'out'), 'MODEL.PRETRAINED', url,
        'INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]', 'DATALOADER.NUM_WORKERS', '0', 'SOLVER.MAX_ITER', '2',
        'SOLVER.WARMUP_ITERS', '1', 'SOLVER.REFERENCE_WORLD_SIZE', 'None'], expect_rc=1)
    cache = osp.join(str(tmp_path / 'hub'), 'hub', 'checkpoints', 'resnet50-0676ba61.pth')
    last = out.strip().splitlines()[-1]
    assert last.startswith('cvpack.safe_load.CheckpointError: %s: MODEL.PRETRAINED: the ImageNet weights could '
                           'not be fetched (could not be downloaded (URLError: ' % url), last
    assert last.endswith("pass its local path (MODEL.PRETRAINED /path/to/resnet50-0676ba61.pth) or copy it to %s; "
                         "or train from a random initialisation with MODEL.PRETRAINED ''" % cache), last
    # a download is named by its URL (cvpack.safe_load.url_cache_path); a file copied to ``cache`` is used as it is
    own = cache[:-len('.pth')] + '.%s.pth' % hashlib.sha256(url.encode('utf-8')).hexdigest()[:12]
    assert 'downloading the ImageNet weights of MODEL.PRETRAINED %s to %s' % (url, own) in out
    log = open(tmp_path / 'out' / 'log.txt').read()     # the reason is in the run's log too
    assert 'the ImageNet weights could not be fetched' in log
