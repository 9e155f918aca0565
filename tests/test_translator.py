import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan_sdk import Domain, GeneratorConfig, ModelFileError, ModelMetadata, Translator, ValueScaling
from cyclegan_sdk.tiling import plan_tiles

TINY = GeneratorConfig(ngf=4, n_blocks=1)


@pytest.fixture(scope="module")
def tiny():
    return Translator.random(TINY, domains=("horse", "zebra"))


def _reference_translate(net, img_uint8):
    """uint8 (H, W, 3) -> uint8 through the network, computed by hand (H, W multiples of 4)."""
    x = torch.from_numpy(img_uint8).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = net(x)[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)


def test_values_equal_hand_computation(tiny, photo_small):
    out = tiny.translate(photo_small, precision="fp32")
    ref = _reference_translate(tiny.generator("a2b"), photo_small)
    assert out.dtype == np.uint8 and out.shape == photo_small.shape
    assert np.abs(out.astype(int) - ref).max() <= 1
    back = tiny.translate(photo_small, "b2a", precision="fp32")
    assert np.abs(back.astype(int) - _reference_translate(tiny.generator("b2a"), photo_small)).max() <= 1


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (37, 101, 3), (64, 9, 3)])
def test_any_size_keeps_height_and_width(tiny, shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = tiny.translate(img, precision="fp32")
    assert out.shape == shape and out.dtype == np.uint8


def test_padding_does_not_leak_into_statistics(tiny, photo_small):
    # a crop whose size needs padding: pixels near the origin match the unpadded translation closely
    crop = photo_small[:93, :127]
    out = tiny.translate(crop, precision="fp32").astype(int)
    full = tiny.translate(photo_small, precision="fp32").astype(int)
    assert np.abs(out[:80, :110] - full[:80, :110]).mean() < 1.5


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.float16])
def test_dtype_preserved(tiny, photo_small, dtype):
    if np.dtype(dtype).kind == "u":
        img = (photo_small.astype(np.float64) / 255 * np.iinfo(dtype).max).astype(dtype)
    else:
        img = (photo_small / 255).astype(dtype)
    out = tiny.translate(img, precision="fp32")
    assert out.dtype == dtype and out.shape == img.shape
    ref = tiny.translate(photo_small, precision="fp32").astype(np.float64) / 255
    scale = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    assert np.abs(out.astype(np.float64) / scale - ref).mean() < 0.01
    if np.dtype(dtype).kind == "f":
        assert 0 <= out.min() and out.max() <= 1


def test_layouts(tiny, photo_small):
    base = tiny.translate(photo_small, precision="fp32")
    stack = np.stack([photo_small, photo_small[::-1]])
    out = tiny.translate(stack, precision="fp32")
    assert out.shape == stack.shape
    assert np.array_equal(out[0], base)
    assert np.array_equal(out[1], tiny.translate(photo_small[::-1], precision="fp32"))
    pil = tiny.translate(Image.fromarray(photo_small), precision="fp32")
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and np.array_equal(np.asarray(pil), base)
    chw = torch.from_numpy(photo_small).permute(2, 0, 1).float() / 255
    t_out = tiny.translate(chw, precision="fp32")
    assert isinstance(t_out, torch.Tensor) and t_out.shape == chw.shape and t_out.dtype == torch.float32
    assert (t_out.permute(1, 2, 0).numpy() * 255 - base).__abs__().mean() < 1
    nchw = tiny.translate(chw[None].repeat(2, 1, 1, 1), precision="fp32")
    assert nchw.shape == (2, 3, 96, 128)


def test_grey_model_layouts_and_stacks(photo_small):
    grey_model = Translator.random(GeneratorConfig(ngf=4, n_blocks=1, input_nc=1, output_nc=1))
    grey = photo_small[..., 1]
    out = grey_model.translate(grey, precision="fp32")
    assert out.shape == grey.shape
    stack = np.stack([grey, grey.T[:96, :96].copy().repeat(2, 1)[:, :128]])  # (N, H, W)
    out_stack = grey_model.translate(stack, precision="fp32")
    assert out_stack.shape == stack.shape
    assert np.array_equal(out_stack[0], out)
    # RGB into a 1-channel model: converted to luma explicitly
    luma = np.rint(photo_small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    via_rgb = grey_model.translate(photo_small, precision="fp32")
    assert via_rgb.shape == (96, 128, 1)
    direct = grey_model.translate(luma.astype(np.float32) / 255, precision="fp32")
    assert np.abs(via_rgb[..., 0].astype(float) / 255 - direct).max() < 0.02


def test_grey_into_rgb_model_and_alpha(tiny, photo_small):
    grey = photo_small[..., 0]
    out = tiny.translate(grey, precision="fp32")
    assert out.shape == grey.shape + (3,)
    assert np.array_equal(out, tiny.translate(np.repeat(grey[..., None], 3, -1), precision="fp32"))
    alpha = np.random.default_rng(1).integers(0, 256, grey.shape, dtype=np.uint8)
    rgba = np.dstack([photo_small, alpha])
    out = tiny.translate(rgba, precision="fp32")
    assert out.shape == rgba.shape
    assert np.array_equal(out[..., 3], alpha)
    assert np.array_equal(out[..., :3], tiny.translate(photo_small, precision="fp32"))
    pil = tiny.translate(Image.fromarray(rgba), precision="fp32")
    assert pil.mode == "RGBA"


def test_channel_mismatch_names_both_counts(tiny):
    with pytest.raises(ValueError, match="image has 5 channels but the horse→zebra generator takes 3"):
        tiny.translate(np.zeros((16, 16, 5), np.uint8), layout="HWC")


@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((0, 16, 3), np.uint8), "empty"),
        (np.zeros((16, 16, 0)), "empty"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
        (np.array([[[np.inf, 0, 0]]], np.float32), "1 NaN or infinite"),
        (np.zeros((2, 2, 2, 2, 3), np.uint8), "2 to 4 dimensions"),
        (np.zeros((8, 8), bool), "boolean"),
        (np.zeros((8, 8, 3), np.int16), "value_range"),
        ("image.png", "numpy array, PIL image or torch tensor"),
    ],
)
def test_bad_input_is_a_clear_error(tiny, image, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiny.translate(image)


def test_bad_options(tiny):
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="direction must be 'a2b' or 'b2a'"):
        tiny.translate(img, "zebra")
    with pytest.raises(ValueError, match="precision must be one of"):
        tiny.translate(img, precision="int8")
    with pytest.raises(ValueError, match="CUDA is not available"):
        tiny.translate(img, device="cuda")
    with pytest.raises(ValueError, match="tile_size 4 is below"):
        tiny.translate(img, tile_size=4)


def test_signed_integers_with_value_range(tiny, photo_small):
    img = photo_small.astype(np.int16) - 128
    out = tiny.translate(img, value_range=(-128, 127), precision="fp32")
    assert out.dtype == np.int16
    ref = tiny.translate(photo_small, precision="fp32").astype(int) - 128
    assert np.abs(out.astype(int) - ref).max() <= 1


def test_sixteen_bit_range_scaling_from_the_model(photo_small):
    cfg = GeneratorConfig(ngf=4, n_blocks=1, input_nc=1, output_nc=1)
    base = Translator.random(cfg)
    meta = ModelMetadata(
        generator=cfg,
        domain_a=Domain("A", channels=1, scaling=ValueScaling("range", 1000, 5000)),
        domain_b=Domain("B", channels=1, scaling=ValueScaling("range", 1000, 5000)),
    )
    model = Translator.from_state_dicts(base.state_dicts(), meta)
    grey = photo_small[..., 0].astype(np.float64)
    img16 = (1000 + grey / 255 * 4000).astype(np.uint16)
    out = model.translate(img16, precision="fp32")
    assert out.dtype == np.uint16 and 1000 <= out.min() and out.max() <= 5000
    ref = base.translate(grey / 255, precision="fp32")
    assert np.abs((out.astype(float) - 1000) / 4000 - ref).max() < 1e-3


def test_bf16_auto_close_to_fp32(tiny, photo_small):
    from cyclegan_sdk.precision import cpu_has_fast_bf16

    fast = tiny.translate(photo_small, precision="bf16")
    exact = tiny.translate(photo_small, precision="fp32")
    assert np.abs(fast.astype(int) - exact).mean() < 3
    auto = tiny.translate(photo_small)
    assert np.array_equal(auto, fast if cpu_has_fast_bf16() else exact)


def test_progress_callback(tiny, photo_small):
    calls = []
    tiny.translate(np.stack([photo_small] * 3), precision="fp32", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)
    calls.clear()
    tiny.translate(photo_small, tile_size=64, overlap=16, precision="fp32", progress=lambda d, t: calls.append((d, t)))
    n = len(plan_tiles(96, 128, 64, 16, 4))
    assert calls[-1] == (n, n) and n > 1


# ----------------------------------------------------------------- large images


@pytest.fixture(scope="module")
def resnet6():
    torch.manual_seed(0)
    return Translator.random(GeneratorConfig(ngf=16, n_blocks=6), seed=3)


@pytest.fixture(scope="module")
def whole_1024(resnet6, photo_1024):
    return resnet6.translate(photo_1024, tile_size=0, precision="fp32").astype(np.float64)


def _naive_tiling(translator, image, tile, overlap):
    """Each tile translated on its own (its own statistics), blended with the same windows."""
    plan = plan_tiles(image.shape[0], image.shape[1], tile, overlap, 4)
    out = np.zeros(image.shape, np.float64)
    for i in range(plan.grid[0]):
        for j in range(plan.grid[1]):
            y0, y1, x0, x1 = plan.box(i, j)
            t = translator.translate(image[y0:y1, x0:x1], tile_size=0, precision="fp32").astype(np.float64)
            out[y0:y1, x0:x1] += t * plan.window(i, j)[..., None]
    return out


@pytest.fixture(scope="module")
def naive_1024(resnet6, photo_1024):
    return _naive_tiling(resnet6, photo_1024, 256, 64)


def test_tiled_matches_whole_image(resnet6, photo_1024, whole_1024, naive_1024):
    tiled = resnet6.translate(photo_1024, tile_size=256, precision="fp32").astype(np.float64)
    diff = np.abs(tiled - whole_1024).mean(-1)
    naive = np.abs(naive_1024 - whole_1024).mean(-1)
    # the test is meaningful: per-tile statistics differ a lot on this image and network
    assert naive.mean() > 10
    assert diff.mean() <= 2, diff.mean()
    # no seams: no row or column of the difference map stands out
    assert diff.mean(axis=1).max() <= 6 and diff.mean(axis=0).max() <= 6


def test_sampled_statistics_beyond_the_budget(resnet6, photo_1024, whole_1024, naive_1024):
    # more tile pixels than the statistics budget: a spread sample of tiles sets the statistics
    sampled = resnet6.translate(photo_1024, tile_size=256, statistics_pixels=2**19, precision="fp32")
    again = resnet6.translate(photo_1024, tile_size=256, statistics_pixels=2**19, precision="fp32")
    assert np.array_equal(sampled, again)
    err = np.abs(sampled.astype(np.float64) - whole_1024).mean()
    assert err < 0.6 * np.abs(naive_1024 - whole_1024).mean()


def test_shifted_tile_grid_gives_the_same_image(resnet6, photo_1024):
    a = resnet6.translate(photo_1024, tile_size=256, precision="fp32").astype(np.float64)
    b = resnet6.translate(photo_1024, tile_size=320, overlap=96, precision="fp32").astype(np.float64)
    diff = np.abs(a - b).mean(-1)
    assert diff.mean() <= 2 and diff.mean(axis=1).max() <= 6 and diff.mean(axis=0).max() <= 6


def test_tile_larger_than_image_equals_untiled(resnet6, photo_small):
    whole = resnet6.translate(photo_small, tile_size=0, precision="fp32")
    assert np.array_equal(resnet6.translate(photo_small, tile_size=512, precision="fp32"), whole)
    assert np.array_equal(resnet6.translate(photo_small, precision="fp32"), whole)


def test_tiled_batches_equal_single_tiles(resnet6, photo_1024):
    crop = photo_1024[200:600, 300:700]
    one = resnet6.translate(crop, tile_size=128, batch_size=1, precision="fp32").astype(int)
    many = resnet6.translate(crop, tile_size=128, batch_size=5, precision="fp32").astype(int)
    assert np.abs(one - many).max() <= 1


# ---------------------------------------------------------------- loading


def test_save_pretrained_and_from_pretrained_folder(tiny, tmp_path, photo_small):
    folder = tiny.save_pretrained(tmp_path / "horse2zebra")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    loaded = Translator.from_pretrained(folder)
    assert loaded.domains == ("horse", "zebra")
    assert np.array_equal(loaded.translate(photo_small, precision="fp32"), tiny.translate(photo_small, precision="fp32"))
    assert Translator.from_pretrained(folder / "model.safetensors").domains == ("horse", "zebra")


def test_from_pretrained_hub_id_offline_from_cache(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--lab--stain-transfer"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    tiny.save(repo / "snapshots" / commit / "model.safetensors")
    loaded = Translator.from_pretrained("lab/stain-transfer", cache_dir=tmp_path / "cache")
    assert loaded.domains == ("horse", "zebra")
    with pytest.raises(ModelFileError, match="lab/other: no file or folder 'lab/other' here; as a Hub repo id, model.safetensors is not in the local Hub cache"):
        Translator.from_pretrained("lab/other", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        Translator.from_pretrained(tmp_path / "missing.safetensors")


def test_half_precision_file_translates_like_full(tiny, tmp_path, photo_small):
    tiny.save(tmp_path / "half.safetensors", dtype=torch.float16)
    tiny.save(tmp_path / "full.safetensors")
    half = Translator.load(tmp_path / "half.safetensors")
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    diff = np.abs(half.translate(photo_small, precision="fp32").astype(int) - tiny.translate(photo_small, precision="fp32"))
    assert diff.max() <= 2


def test_compile_matches_eager(photo_small):
    t = Translator.random(GeneratorConfig(ngf=4, n_blocks=1))
    eager = t.translate(photo_small, precision="fp32")
    compiled = t.translate(photo_small, precision="fp32", compile=True)
    assert np.abs(compiled.astype(int) - eager).max() <= 1


def test_pil_sixteen_bit_grey(photo_small):
    grey_model = Translator.random(GeneratorConfig(ngf=4, n_blocks=1, input_nc=1, output_nc=1))
    g16 = photo_small[..., 0].astype(np.uint16) * 257
    expected = grey_model.translate(g16, precision="fp32")
    for img in (Image.fromarray(g16), Image.fromarray(g16.astype(np.int32))):
        out = grey_model.translate(img, precision="fp32")
        assert np.asarray(out).dtype == np.uint16
        assert np.array_equal(np.asarray(out), expected)
