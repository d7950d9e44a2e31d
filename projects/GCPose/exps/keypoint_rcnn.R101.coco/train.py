from cvpack.engine import train_main
from config import cfg
from network import build_model

if __name__ == '__main__':
    train_main(cfg, build_model)
