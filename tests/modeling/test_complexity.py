"""cvpack.tools.complexity: hand-counted MACs, and the CLI on an exp folder (docs/reference/rsn_mspn.md §8 numbers)."""
import json
import os

import pytest
import torch
from torch import nn

from cvpack.tools.complexity import count_macs, main


def _tiny():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),             # 8*4*4 outputs x 3*9      = 3456
        nn.Conv2d(8, 8, 3, padding=1, groups=4),   # 8*4*4 outputs x 2*9      = 2304
        nn.ConvTranspose2d(8, 4, 2, stride=2),     # 8*4*4 inputs  x 4*2*2    = 2048
        nn.Flatten(), nn.Linear(256, 10))          # 10 outputs    x 256      = 2560


@pytest.mark.parametrize('device', ['cpu', 'meta'])
def test_count_macs_by_hand(device):
    with torch.device(device):
        model = _tiny()
        assert count_macs(model, torch.zeros(1, 3, 4, 4)) == 3456 + 2304 + 2048 + 2560
        assert count_macs(model, torch.zeros(2, 3, 4, 4)) == 2 * (3456 + 2304 + 2048 + 2560)
    assert model.training   # mode restored


def test_cli_json_on_exp(repo_root, capsys):
    main([os.path.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco'), '--json'])
    out = json.loads(capsys.readouterr().out)
    assert out['params'] == 8558924                       # docs/reference/rsn_mspn.md §8, Res18
    assert out['gmacs'] == pytest.approx(2.065, abs=1e-3)
    # KEY VALUE overrides after the folder
    main([os.path.join(repo_root, 'projects', 'RSN', 'exps', 'RSN18.coco'), 'MODEL.BLOCKS', '[3, 4, 6, 3]'])
    text = capsys.readouterr().out
    assert '19,355,132' in text and '4.068 GMACs' in text   # RSN-18 exp with RSN-50 block counts
                                                            # (docs/reference/rsn_mspn.md §1.6)
