"""The 'module:Class' resolver of DATASET.CLASS / TEST.PREDICTOR / TEST.EVALUATOR / MODEL.BACKBONE
(cvpack.utils.import_target, configured_class): every bad string fails naming the key and the string, and the
target must be callable (a class or a factory function; a class where the caller needs one: MODEL.BACKBONE)."""
import pytest

from cvpack.utils import configured_class, import_target

CORE = {'megvii': 'cvpack.data.topdown:TopDownDataset'}


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Three importable modules: one with a class, a function and a constant; one raising on import; one with
    a syntax error."""
    (tmp_path / 'goodmod_it.py').write_text('class Thing:\n    pass\n\ndef make():\n    return 1\n\nLIMIT = 3\n')
    (tmp_path / 'raisesmod_it.py').write_text('raise RuntimeError("no GPU here")\n')
    (tmp_path / 'syntaxmod_it.py').write_text('def broken(:\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_good_spec_gives_the_class(modules):
    cls = import_target('goodmod_it:Thing', 'DATASET.CLASS')
    assert cls.__name__ == 'Thing' and cls.__module__ == 'goodmod_it'
    assert configured_class('', 'DATASET.CLASS', 'megvii', CORE, 'dataset').__name__ == 'TopDownDataset'


@pytest.mark.parametrize('spec', ['goodmod_it.Thing', 'goodmod_it:', ':Thing', '', None, 3, ' :Thing'])
def test_malformed_spec_names_key_and_value(modules, spec):
    with pytest.raises(ValueError, match=r"TEST.PREDICTOR must be a 'module:Class' string, got %s"
                       % __import__('re').escape(repr(spec))):
        import_target(spec, 'TEST.PREDICTOR')


@pytest.mark.parametrize('spec, error, message', [
    ('nosuchmod_it:Thing', ImportError, r"TEST.EVALUATOR = 'nosuchmod_it:Thing' cannot be imported: No module"),
    ('goodmod_it:Nope', ImportError, r"TEST.EVALUATOR = 'goodmod_it:Nope' cannot be imported: .*'Nope'"),
    ('raisesmod_it:Thing', ImportError,
     r"TEST.EVALUATOR = 'raisesmod_it:Thing': importing module 'raisesmod_it' raised RuntimeError: no GPU here"),
    ('syntaxmod_it:X', ImportError, r"TEST.EVALUATOR = 'syntaxmod_it:X': importing module 'syntaxmod_it' raised "
                                    r"SyntaxError"),
    ('goodmod_it:LIMIT', TypeError, r"TEST.EVALUATOR = 'goodmod_it:LIMIT' is a int, not a class or a factory"),
])
def test_unusable_target_names_key_and_value(modules, spec, error, message):
    with pytest.raises(error, match=message):
        import_target(spec, 'TEST.EVALUATOR')
    with pytest.raises(error, match=message.replace('TEST.EVALUATOR', 'DATASET.CLASS')):
        configured_class(spec, 'DATASET.CLASS', 'megvii', CORE, 'dataset')


def test_factory_function_is_accepted_where_the_caller_calls_it(modules):
    """A builder function (``def make(cfg)``) as TEST.EVALUATOR / DATASET.CLASS worked before the resolver
    checked its targets, and still does; only MODEL.BACKBONE needs the class itself."""
    assert import_target('goodmod_it:make', 'TEST.EVALUATOR')() == 1
    assert configured_class('goodmod_it:make', 'DATASET.CLASS', 'megvii', CORE, 'dataset')() == 1
    with pytest.raises(TypeError, match=r"encoder = 'goodmod_it:make' is a function, not a class"):
        import_target('goodmod_it:make', 'encoder', class_only=True)


def test_backbone_block_must_be_a_class(modules):
    from cvpack.config.megvii import megvii_config
    from cvpack.modeling.multistage import build_multistage
    cfg = megvii_config(str(modules), dataset='COCO')
    cfg.MODEL.BACKBONE, cfg.MODEL.BLOCKS = 'goodmod_it:make', [1, 1, 1, 1]
    with pytest.raises(TypeError, match=r"MODEL.BACKBONE = 'goodmod_it:make' is a function, not a class"):
        build_multistage(cfg)
    cfg.MODEL.BACKBONE = 'raisesmod_it:Block'
    with pytest.raises(ImportError, match=r"MODEL.BACKBONE = 'raisesmod_it:Block': importing .* RuntimeError"):
        build_multistage(cfg)
