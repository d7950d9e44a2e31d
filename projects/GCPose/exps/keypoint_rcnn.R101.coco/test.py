from cvpack.engine import test_main
from config import cfg
from network import build_model

if __name__ == '__main__':
    test_main(cfg, build_model)
