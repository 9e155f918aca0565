import pytest
import torch
from reference_nets import ReferenceResnetGenerator, randomised

from cyclegan_sdk import ModelFileError, Translator
from cyclegan_sdk.reference import clean_state_dict, infer_generator_config


def _save_reference(path, net, prefix="", legacy=False):
    sd = {prefix + k: v for k, v in net.state_dict().items()}
    if legacy:  # old PyTorch saved running stats for affine-free instance norms
        sd[prefix + "model.2.running_mean"] = torch.zeros(net.model[1].out_channels)
        sd[prefix + "model.2.running_var"] = torch.ones(net.model[1].out_channels)
        sd[prefix + "model.2.num_batches_tracked"] = torch.tensor(0)
    torch.save(sd, path)
    return path


def test_import_matches_reference_outputs(tmp_path):
    ref_ab = randomised(ReferenceResnetGenerator(ngf=8, n_blocks=9), seed=1)
    ref_ba = randomised(ReferenceResnetGenerator(ngf=8, n_blocks=9), seed=2)
    a = _save_reference(tmp_path / "latest_net_G_A.pth", ref_ab, prefix="module.", legacy=True)
    b = _save_reference(tmp_path / "latest_net_G_B.pth", ref_ba)
    t = Translator.from_reference_checkpoint(a, b, domains=("horse", "zebra"))
    assert t.domains == ("horse", "zebra")
    assert t.metadata.generator.n_blocks == 9 and t.metadata.generator.ngf == 8
    x = torch.rand(1, 3, 64, 80) * 2 - 1
    with torch.no_grad():
        for direction, ref in (("a2b", ref_ab), ("b2a", ref_ba)):
            diff = (t.generator(direction)(x) - ref(x)).abs().max().item()
            assert diff < 1e-5, (direction, diff)
    # and after a round trip through the model file
    t.save(tmp_path / "m.safetensors")
    t2 = Translator.load(tmp_path / "m.safetensors")
    assert t2.metadata.source["kind"] == "reference"
    with torch.no_grad():
        assert (t2.generator("a2b")(x) - ref_ab(x)).abs().max().item() < 1e-5


def test_six_blocks_and_grey_inferred(tmp_path):
    ref = randomised(ReferenceResnetGenerator(input_nc=1, output_nc=3, ngf=4, n_blocks=6))
    path = _save_reference(tmp_path / "gray2rgb.pth", ref)
    t = Translator.from_reference_checkpoint(path)
    cfg = t.metadata.generator
    assert (cfg.n_blocks, cfg.ngf, cfg.input_nc, cfg.output_nc) == (6, 4, 1, 3)
    assert t.directions == ("a2b",)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert (t.generator()(x) - ref(x)).abs().max().item() < 1e-5


def test_explicit_override_that_contradicts_weights_is_named(tmp_path):
    path = _save_reference(tmp_path / "g.pth", ReferenceResnetGenerator(ngf=4, n_blocks=6))
    with pytest.raises(ModelFileError, match=r"g.pth: does not match resnet generator \(ngf=4, n_blocks=9\)"):
        Translator.from_reference_checkpoint(path, n_blocks=9)


def test_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": Evil()}, path)
    with pytest.raises(ModelFileError, match="evil.pth: not a loadable PyTorch checkpoint"):
        Translator.from_reference_checkpoint(path)


def test_not_a_generator(tmp_path):
    path = tmp_path / "d.pth"
    torch.save({"model.0.weight": torch.zeros(8, 3, 4, 4)}, path)
    with pytest.raises(ModelFileError, match="not a reference generator"):
        Translator.from_reference_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        Translator.from_reference_checkpoint(tmp_path / "missing.pth")


def test_clean_keeps_batch_norm_statistics():
    from cyclegan_sdk.networks import GeneratorConfig, build_generator

    cfg = GeneratorConfig(ngf=4, n_blocks=1, norm="batch")
    sd = clean_state_dict({"module." + k: v for k, v in build_generator(cfg).state_dict().items()})
    assert "model.2.running_mean" in sd
    assert infer_generator_config(sd) == cfg
