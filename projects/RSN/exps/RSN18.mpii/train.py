from config import cfg
from network import build_model

from cvpack.engine import train_main

if __name__ == '__main__':
    train_main(cfg, build_model)
