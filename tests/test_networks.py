import pytest
import torch
from reference_nets import ReferenceResnetGenerator, randomised

from cyclegan_sdk.networks import (
    DiscriminatorConfig,
    GeneratorConfig,
    InstanceNorm,
    NLayerDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    build_generator,
    init_weights,
)


def _keys(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_resnet9_matches_reference_layout():
    g = ResnetGenerator(GeneratorConfig())
    sd = _keys(g)
    assert len(sd) == 48
    assert sum(p.numel() for p in g.parameters()) == 11_378_179
    layers = sorted({k.rsplit(".", 1)[0] for k in sd})
    expected = {"model.1", "model.4", "model.7", "model.19", "model.22", "model.26"}
    expected |= {f"model.{i}.conv_block.{j}" for i in range(10, 19) for j in (1, 5)}
    assert set(layers) == expected
    assert sd["model.22.weight"] == (128, 64, 3, 3)  # ConvTranspose: [in, out, k, k]
    assert sd == _keys(ReferenceResnetGenerator())


def test_resnet6_with_dropout_layout():
    g = ResnetGenerator(GeneratorConfig(n_blocks=6, use_dropout=True))
    sd = _keys(g)
    assert "model.23.weight" in sd and "model.26.weight" not in sd
    assert "model.10.conv_block.6.weight" in sd and "model.10.conv_block.5.weight" not in sd
    assert sd == _keys(ReferenceResnetGenerator(n_blocks=6, use_dropout=True))


def test_same_outputs_as_reference_statement():
    ref = randomised(ReferenceResnetGenerator(input_nc=1, output_nc=2, ngf=8, n_blocks=3))
    ours = ResnetGenerator(GeneratorConfig(input_nc=1, output_nc=2, ngf=8, n_blocks=3)).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(2, 1, 36, 44) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_discriminator_layout_and_patch_grid():
    d = NLayerDiscriminator(DiscriminatorConfig())
    assert list(dict.fromkeys(k.rsplit(".", 1)[0] for k in d.state_dict())) == [
        "model.0", "model.2", "model.5", "model.8", "model.11"]
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


@pytest.mark.parametrize("num_downs,size", [(7, 128), (8, 256)])
def test_unet_shapes(num_downs, size):
    g = UnetGenerator(GeneratorConfig(generator="unet", num_downs=num_downs, ngf=4, input_nc=1, output_nc=3))
    assert g(torch.zeros(1, 1, size, size)).shape == (1, 3, size, size)
    # the reference's unet_256 has 54.4 M parameters at ngf 64
    if num_downs == 8:
        full = UnetGenerator(GeneratorConfig(generator="unet", num_downs=8))
        assert sum(p.numel() for p in full.parameters()) == 54_409_603


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("upsample", ["convtranspose", "resize"])
def test_generator_variants_run(norm, upsample):
    cfg = GeneratorConfig(ngf=4, n_blocks=2, norm=norm, upsample=upsample, input_nc=4, output_nc=1, use_dropout=True)
    g = build_generator(cfg).eval()
    y = g(torch.rand(2, 4, 32, 48) * 2 - 1)
    assert y.shape == (2, 1, 32, 48)
    assert y.abs().max() <= 1
    conv_biases = [m.bias is not None for m in g.modules() if isinstance(m, torch.nn.Conv2d)][:-1]
    assert all(conv_biases) == (norm != "batch")


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="norm"):
        GeneratorConfig(norm="layer")
    with pytest.raises(ValueError, match="input_nc"):
        GeneratorConfig(input_nc=0)
    with pytest.raises(ValueError, match="unknown generator config keys: colour"):
        GeneratorConfig.from_dict({"colour": 1})


def test_instance_norm_modes():
    norm = InstanceNorm(3)
    x = torch.randn(2, 3, 8, 8) * 4 + 2
    assert torch.allclose(norm(x), torch.nn.functional.instance_norm(x), atol=1e-5)
    # pooled over the batch with uniform weights: one set of statistics for both samples
    norm.pool(torch.ones(2, 1, 8, 8))
    y = norm(x)
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(norm.stats[0], mean, atol=1e-5) and torch.allclose(norm.stats[1], var, atol=1e-4)
    assert torch.allclose(y, (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5), atol=1e-5)
    # frozen: the next input reuses them
    z = torch.randn(1, 3, 4, 4)
    assert torch.allclose(norm(z), (z - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5), atol=1e-5)
    # weights exclude pixels: stats of the left half only
    norm.pool(torch.cat([torch.ones(1, 1, 8, 4), torch.zeros(1, 1, 8, 4)], dim=3), per_sample=True)
    norm(x[:1])
    assert torch.allclose(norm.stats[0][0], x[0, :, :, :4].mean(dim=(1, 2)), atol=1e-5)
    norm.reset()
    assert norm.stats is None
    assert "_mean" not in norm.state_dict()


def test_init_weights_reference_gain():
    g = init_weights(build_generator(GeneratorConfig(ngf=8, n_blocks=2)), gain=0.02)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.002
    assert all(m.bias.abs().max() == 0 for m in g.modules() if isinstance(m, torch.nn.Conv2d))
