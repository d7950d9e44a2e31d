from config import cfg
from network import build_model

from cvpack.engine import test_main

if __name__ == '__main__':
    test_main(cfg, build_model)
