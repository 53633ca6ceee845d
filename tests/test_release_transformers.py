"""DiT and SiT: one network (skicr.models._dit._ReleaseTransformer), two time conventions and outputs."""

import torch

from skicr.extraction import DiTReleaseBackbone, SiTReleaseBackbone, as_backbone
from skicr.models import DiT, SiT

SMALL = dict(input_size=8, hidden_size=64, depth=2, num_heads=2, num_classes=10)


def test_dit_and_sit_share_the_network_and_differ_in_their_output():
    torch.manual_seed(0)
    dit = DiT(**SMALL).eval()
    sit = SiT(**SMALL).eval()
    assert dit.state_dict().keys() == sit.state_dict().keys()
    sit.load_state_dict(dit.state_dict())  # the same parameters, strict
    x, y = torch.randn(2, 4, 8, 8), torch.tensor([1, 10])
    t = torch.tensor([0.3, 0.7])
    with torch.no_grad():
        both = dit(x, t, y)
        velocity = sit(x, t, y)
    assert both.shape == (2, 8, 8, 8) and velocity.shape == (2, 4, 8, 8)
    torch.testing.assert_close(velocity, both[:, :4], rtol=0, atol=0)  # SiT drops the sigma half
    assert dit.null_class == sit.null_class == 10


def test_each_family_names_its_time_input_and_adapter():
    assert (DiT.time_input, SiT.time_input) == ("ddpm_timestep", "flow_time_data_at_one")
    assert isinstance(as_backbone(DiT(**SMALL)), DiTReleaseBackbone)
    assert isinstance(as_backbone(SiT(**SMALL)), SiTReleaseBackbone)
    for cls in (DiT, SiT):
        assert "learn_sigma : bool, default=True" in cls.__doc__ and "Examples" in cls.__doc__
