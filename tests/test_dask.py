"""Lazy translation of dask arrays equals in-memory translation, on threads and on a 2-worker cluster."""

import numpy as np
import pytest
import torch

from cyclegan_sdk import GeneratorConfig, Translator
from cyclegan_sdk.lazy import _Network

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def resnet6():
    return Translator.random(GeneratorConfig(ngf=16, n_blocks=6), seed=3)


def test_equals_in_memory_translation(resnet6, photo_1024):
    expected = resnet6.translate(photo_1024, tile_size=256, precision="fp32")
    lazy = resnet6.translate_dask(da.from_array(photo_1024, chunks=(300, 400, 3)), tile_size=256, precision="fp32")
    assert lazy.shape == photo_1024.shape and lazy.dtype == np.uint8
    assert lazy.chunks[:2] == ((300, 300, 300, 124), (400, 400, 224))  # the input's chunks
    out = lazy.compute(scheduler="threads")
    assert np.abs(out.astype(int) - expected).mean() <= 1


def test_sampled_statistics_follow_the_same_rule(resnet6, photo_1024):
    expected = resnet6.translate(photo_1024, tile_size=256, precision="fp32", statistics_pixels=2**19)
    out = resnet6.translate_dask(da.from_array(photo_1024, chunks=512), tile_size=256, precision="fp32",
                                 statistics_pixels=2**19).compute()
    assert np.abs(out.astype(int) - expected).mean() <= 1


def test_small_grey_and_alpha_images(photo_small):
    t = Translator.random(GeneratorConfig(ngf=4, n_blocks=1))
    crop = photo_small[:93, :101]  # needs padding
    assert np.array_equal(t.translate_dask(da.from_array(crop, chunks=50), precision="fp32").compute(),
                          t.translate(crop, precision="fp32"))
    grey = photo_small[..., 0]
    assert t.translate_dask(da.from_array(grey, chunks=64), precision="fp32").shape == grey.shape + (3,)
    rgba = np.dstack([photo_small, np.arange(photo_small[..., 0].size, dtype=np.uint8).reshape(grey.shape)])
    out = t.translate_dask(da.from_array(rgba, chunks=48), tile_size=64, overlap=16, precision="fp32").compute()
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert np.abs(out.astype(int) - t.translate(rgba, tile_size=64, overlap=16, precision="fp32")).max() <= 1
    with pytest.raises(ValueError, match=r"takes \(H, W\), \(H, W, C\), \(N, H, W\) or \(N, H, W, C\)"):
        t.translate_dask(da.zeros((2, 2, 8, 8, 3), dtype="uint8"))
    with pytest.raises(ValueError, match="at most 4 channels"):
        t.translate_dask(da.zeros((2, 8, 8, 5), dtype="uint8"))


def test_stacks_translate_slice_by_slice(photo_small):
    t = Translator.random(GeneratorConfig(ngf=4, n_blocks=1), seed=1)
    # Slices that differ in brightness: each must get its own statistics, as in translate.
    stack = np.stack([photo_small[:90, :100] // k for k in (1, 2, 3)])
    lazy = t.translate_dask(da.from_array(stack, chunks=(1, 50, 60, 3)), precision="fp32")
    assert lazy.chunks == ((1, 1, 1), (50, 40), (60, 40), (3,))
    assert np.array_equal(lazy.compute(scheduler="threads"), t.translate(stack, precision="fp32"))  # whole slices
    tiled = t.translate_dask(da.from_array(stack, chunks=(2, 64, 64, 3)), tile_size=48, overlap=16,
                             precision="fp32")
    assert tiled.chunks[0] == (2, 1)
    expected = t.translate(stack, tile_size=48, overlap=16, precision="fp32")
    assert np.abs(tiled.compute(scheduler="threads").astype(int) - expected).max() <= 1
    grey = (stack[..., 1].astype(np.uint16) * 257)[:, :, :64]  # (N, H, W) uint16 into an RGB model
    out = t.translate_dask(da.from_array(grey, chunks=(1, 45, 64)), tile_size=48, overlap=16, precision="fp32")
    assert out.shape == grey.shape + (3,) and out.dtype == np.uint16
    expected = t.translate(grey, tile_size=48, overlap=16, precision="fp32").astype(int)
    assert np.abs(out.compute().astype(int) - expected).max() <= 257


def test_two_worker_cluster_gets_the_model_once(resnet6, photo_1024):
    distributed = pytest.importorskip("distributed")
    image = photo_1024[:512, :640]
    lazy = resnet6.translate_dask(da.from_array(image, chunks=256), tile_size=256, precision="fp32")
    graph = dict(lazy.__dask_graph__())
    # graph nodes hold the network either plainly or wrapped (dask's DataNode keeps it in .value)
    networks = [k for k, v in graph.items() if isinstance(getattr(v, "value", v), _Network)]
    assert len(networks) == 1  # one copy of the network in the graph, however many tiles
    assert isinstance(graph[networks[0]].value.module, torch.nn.Module)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        out = client.compute(lazy).result()
        # bf16 weights too (the default on CPUs fast at it): the network travels pickled by torch.
        bf16 = client.compute(resnet6.translate_dask(da.from_array(image, chunks=256), tile_size=256,
                                                     precision="bf16")).result()
    assert np.abs(out.astype(int) - resnet6.translate(image, tile_size=256, precision="fp32")).mean() <= 1
    assert np.abs(bf16.astype(int) - resnet6.translate(image, tile_size=256, precision="bf16")).mean() <= 1
