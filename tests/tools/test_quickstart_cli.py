"""tools/quickstart.py on bad arguments and failing steps: usage errors are one line with exit 2, the output
folder is emptied only when an earlier quick start made it (marker file), a failing step (train, test, draw)
ends the run with one line naming the step and its log. The exp's scripts are replaced by fakes here (the real
end-to-end run is tests/projects/test_megvii_scripts.py::test_quickstart_ci_sized)."""
import subprocess

import pytest

FAKE_SCRIPT = r'''import json, os, sys
argv = sys.argv[1:]
opt = lambda key, default=None: argv[argv.index(key) + 1] if key in argv else default
out = opt('OUTPUT_DIR')
step = os.path.basename(sys.argv[0])[:-3]
mode = os.environ.get('FAKE_' + step.upper(), 'ok')
print('fake %s: %s' % (step, mode), flush=True)
if mode == 'fail':
    sys.exit(3)
if step == 'train':
    open(os.path.join(out, 'iter-%s.pth' % opt('SOLVER.MAX_ITER')), 'w').close()
else:
    folder = opt('TEST_DIR', os.path.join(out, 'test_dir'))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'metrics.json'), 'w') as f:
        json.dump({'metrics': {'AP': 0.25}}, f)
    if mode != 'no-results':
        with open(os.path.join(folder, 'results.json'), 'w') as f:
            json.dump([], f)
'''


@pytest.fixture(scope='module')
def qs(load_tool):
    return load_tool('quickstart')


@pytest.fixture
def fake_exp(tmp_path, monkeypatch):
    """The exp's train.py / test.py replaced by FAKE_SCRIPT: every subprocess runs in a folder holding the fakes
    (FAKE_TRAIN / FAKE_TEST=fail make one fail, FAKE_TEST=no-results leaves the drawing nothing to read)."""
    folder = tmp_path / 'exp'
    folder.mkdir()
    for name in ('train.py', 'test.py'):
        (folder / name).write_text(FAKE_SCRIPT)
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, 'Popen', lambda cmd, cwd=None, **kw: popen(cmd, cwd=str(folder), **kw))
    return folder


def _last_error_line(capsys):
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return err.rstrip('\n').split('\n')[-1]


@pytest.mark.parametrize('argv, message', [
    (['--minutes', '0'], "argument --minutes: must be a number > 0, got '0'"),
    (['--minutes', 'nan'], "argument --minutes: must be a number > 0, got 'nan'"),
    (['--max-iters', '0'], "argument --max-iters: must be an integer >= 1, got '0'"),
    (['--iters', '-5'], "argument --iters: must be an integer >= 1, got '-5'"),
    (['--batch', '0'], "argument --batch: must be an integer >= 1, got '0'"),
    (['--lr=-1e-3'], "argument --lr: must be a number > 0, got '-1e-3'"),
    (['--num-vis', '-1'], "argument --num-vis: must be an integer >= 0, got '-1'"),
    (['--input-size', '100', '96'], '--input-size 100 96: both sides must be multiples of 32'),
    (['--data', '/no/such/coco'], '--data /no/such/coco: not a COCO root'),
])
def test_bad_arguments_exit_2_with_one_line(qs, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        qs.parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1 and 'usage:' not in err
    assert err.startswith('tools/quickstart.py: error: ' + message), err


def test_a_user_folder_is_never_deleted(qs, tmp_path, monkeypatch, capsys):
    def no_run(*args, **kwargs):
        raise AssertionError('the quick start ran into a folder it did not make')
    monkeypatch.setattr(qs, 'run_training', no_run)
    user = tmp_path / 'mine'
    user.mkdir()
    (user / 'thesis.tex').write_text('years of work')
    with pytest.raises(SystemExit) as exc:
        qs.main(['--iters', '1', '--amp', 'none', '--output', str(user)])
    assert exc.value.code == 2 and (user / 'thesis.tex').read_text() == 'years of work'
    assert _last_error_line(capsys) == (
        'tools/quickstart.py: error: --output %s: the folder is not empty and has no .cvpack-quickstart file (the '
        'quick start marks the folders it makes; those of quick starts before 2026-12-02 are unmarked); it is left '
        'alone: delete it yourself or give a new or an empty folder' % user)
    (tmp_path / 'a_file').write_text('x')
    with pytest.raises(qs.UsageError, match='a_file: exists and is not a folder'):
        qs.prepare_output(str(tmp_path / 'a_file'))


def test_only_a_marked_folder_is_emptied(qs, tmp_path):
    new = tmp_path / 'new' / 'qs'
    qs.prepare_output(str(new))
    assert sorted(p.name for p in new.iterdir()) == ['.cvpack-quickstart']
    (new / 'iter-5.pth').write_text('old run')
    qs.prepare_output(str(new))                                   # made by a quick start: emptied
    assert sorted(p.name for p in new.iterdir()) == ['.cvpack-quickstart']
    link = tmp_path / 'link'
    link.symlink_to(new)                                          # marked, but a link: not followed, refused
    with pytest.raises(qs.UsageError, match='--output .*link: cannot empty the folder'):
        qs.prepare_output(str(link))
    assert (new / '.cvpack-quickstart').is_file()
    empty = tmp_path / 'empty'
    empty.mkdir()
    qs.prepare_output(str(empty))                                 # an empty folder is used as it is
    assert sorted(p.name for p in empty.iterdir()) == ['.cvpack-quickstart']


def test_a_whole_run_with_fake_scripts_keeps_each_steps_log(qs, fake_exp, tmp_path, capsys):
    out = tmp_path / 'qs'
    val, train = qs.main(['--iters', '3', '--amp', 'none', '--output', str(out), '--num-vis', '1'])
    assert val['metrics']['AP'] == train['metrics']['AP'] == 0.25
    assert sorted(p.name for p in (out / 'logs').iterdir()) == ['test-train.log', 'test-val.log', 'train.log']
    assert (out / 'logs' / 'train.log').read_text() == 'fake train: ok\n'
    assert (out / 'iter-3.pth').is_file() and (out / '.cvpack-quickstart').is_file()
    assert 'fake test: ok' in capsys.readouterr().out              # shown as it runs, too
    qs.main(['--iters', '2', '--amp', 'none', '--output', str(out), '--num-vis', '1'])   # its own folder: reused
    assert not (out / 'iter-3.pth').exists() and (out / 'iter-2.pth').is_file()


@pytest.mark.parametrize('fake, step, why', [
    ({'FAKE_TRAIN': 'fail'}, 'train', 'exit code 3'),
    ({'FAKE_TEST': 'fail'}, 'test-val', 'exit code 3'),
    ({'FAKE_TEST': 'no-results'}, 'draw', 'FileNotFoundError: '),
])
def test_a_failing_step_is_one_line_naming_it_and_its_log(qs, fake_exp, tmp_path, monkeypatch, capsys, fake, step,
                                                          why):
    for key, value in fake.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / 'qs'
    with pytest.raises(SystemExit) as exc:
        qs.main(['--iters', '1', '--amp', 'none', '--output', str(out)])
    log = out / 'logs' / (step + '.log')
    assert exc.value.code == 1
    assert _last_error_line(capsys).startswith("tools/quickstart.py: error: step '%s' failed (%s" % (step, why))
    assert str(exc.value).endswith('; its log: %s' % log) and log.is_file()
    assert ('fake %s: fail' % step.split('-')[0]) in log.read_text() if step != 'draw' else \
        'results.json' in log.read_text()                          # the draw step's traceback
