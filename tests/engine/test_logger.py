"""The engine's log handlers reach the library's and the projects' loggers."""
import logging

from cvpack.engine.logger import ROOT_LOGGERS, setup_logger


def _reset():
    for n in ROOT_LOGGERS:
        lg = logging.getLogger(n)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
        lg.propagate = True


def test_projects_loggers_reach_the_log_file(tmp_path):
    import projects.HSRNet.hsrnet.model as hsr
    assert hsr.logger.name == 'projects.HSRNet.hsrnet.model'   # plain __name__, under 'projects'
    log_file = tmp_path / 'log.txt'
    try:
        setup_logger('cvpack.train', str(log_file), rank=0)
        logging.getLogger('projects.MSPN.mspn').info('from mspn')
        hsr.logger.info('from hsrnet')
        logging.getLogger('cvpack.data.coco').info('from cvpack')
        setup_logger('cvpack.train', str(log_file), rank=0)   # a second call replaces, does not duplicate
        logging.getLogger('projects.GCPose.gcpose').info('once')
    finally:
        _reset()
    text = log_file.read_text()
    for msg in ('from mspn', 'from hsrnet', 'from cvpack'):
        assert msg in text
    assert text.count('once') == 1
