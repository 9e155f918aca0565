import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from cyclegan_sdk import Domain, GeneratorConfig, ModelFileError, ModelMetadata, Translator, ValueScaling
from cyclegan_sdk.modelfile import read_metadata, read_model, write_model
from cyclegan_sdk.networks import build_generator

CFG = GeneratorConfig(ngf=4, n_blocks=1, input_nc=1, output_nc=3)


def _meta(**kw):
    return ModelMetadata(
        generator=CFG,
        domain_a=Domain("gray", "grey images", 1, ValueScaling("range", 100.0, 4000.0)),
        domain_b=Domain("colour", channels=3),
        source={"kind": "test"},
        training={"steps": 3},
        **kw,
    )


def _state_dicts():
    meta = _meta()
    return {d: build_generator(meta.generator_config(d)).state_dict() for d in ("a2b", "b2a")}


def test_round_trip_fp32_and_fp16(tmp_path):
    sds = _state_dicts()
    for dtype in (torch.float32, torch.float16):
        path = write_model(tmp_path / f"m-{dtype}.safetensors", sds, _meta(), dtype=dtype)
        loaded, meta = read_model(path)
        assert meta == _meta()
        assert set(loaded) == {"a2b", "b2a"}
        for d in sds:
            for k, v in sds[d].items():
                tol = 0 if dtype == torch.float32 else 1e-3
                assert torch.allclose(loaded[d][k], v, atol=tol)
                assert loaded[d][k].dtype == torch.float32
    # G_BA has the channel counts swapped
    assert loaded["b2a"]["model.1.weight"].shape[1] == 3


def test_layout_is_plain_safetensors(tmp_path):
    path = write_model(tmp_path / "m.safetensors", _state_dicts(), _meta())
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        keys = list(fh.keys())
        doc = json.loads(fh.metadata()["cyclegan"])
    assert "G_AB.model.1.weight" in keys and "G_BA.model.1.weight" in keys
    assert doc["format_version"] == 1
    assert doc["domains"]["a"]["scaling"] == {"mode": "range", "low": 100.0, "high": 4000.0}
    assert doc["generator"]["ngf"] == 4


def test_one_direction_model(tmp_path):
    sds = _state_dicts()
    path = write_model(tmp_path / "m.safetensors", {"a2b": sds["a2b"]}, _meta())
    t = Translator.load(path)
    assert t.directions == ("a2b",)
    with pytest.raises(ValueError, match="no b2a generator"):
        t.translate(torch.zeros(3, 8, 8), "b2a")


def test_write_is_atomic_and_keeps_old_file(tmp_path):
    path = write_model(tmp_path / "m.safetensors", _state_dicts(), _meta())
    before = path.read_bytes()
    bad = _state_dicts()
    bad["a2b"]["model.1.weight"] = torch.zeros(5, 1, 7, 7)
    with pytest.raises(ValueError, match="model.1.weight"):
        write_model(path, bad, _meta())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def _good(tmp_path):
    return write_model(tmp_path / "good.safetensors", _state_dicts(), _meta())


def test_not_safetensors(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"PK\x03\x04 a zip file, not a model")
    with pytest.raises(ModelFileError, match=r"x.safetensors: not a safetensors file"):
        read_model(p)
    p.write_bytes(b"abc")
    with pytest.raises(ModelFileError, match="too short"):
        read_model(p)


def test_truncated(tmp_path):
    good = _good(tmp_path).read_bytes()
    p = tmp_path / "t.safetensors"
    p.write_bytes(good[: len(good) - 100])
    with pytest.raises(ModelFileError, match="t.safetensors: truncated"):
        read_model(p)
    p.write_bytes(good[:20])
    with pytest.raises(ModelFileError, match="truncated"):
        read_model(p)


def _rewrite_metadata(path, fn):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    doc = json.loads(header["__metadata__"]["cyclegan"])
    fn(doc)
    header["__metadata__"]["cyclegan"] = json.dumps(doc)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def test_unknown_format_version(tmp_path):
    p = _good(tmp_path)
    _rewrite_metadata(p, lambda d: d.update(format_version=7))
    with pytest.raises(ModelFileError, match="format version 7 is not supported"):
        read_model(p)


def test_bad_config_and_channels(tmp_path):
    p = _good(tmp_path)
    _rewrite_metadata(p, lambda d: d["generator"].update(colour=1))
    with pytest.raises(ModelFileError, match="colour"):
        read_metadata(p)
    p = _good(tmp_path)
    _rewrite_metadata(p, lambda d: d["domains"]["a"].update(channels=4))
    with pytest.raises(ModelFileError, match="domain channels"):
        read_metadata(p)


def test_shape_mismatch_with_config(tmp_path):
    p = _good(tmp_path)
    _rewrite_metadata(p, lambda d: d["generator"].update(ngf=8))
    with pytest.raises(ModelFileError, match=r"G_AB shape mismatch for model.1.weight: file has \[4, 1, 7, 7\]"):
        read_model(p)


def test_missing_and_extra_tensors(tmp_path):
    meta = _meta()
    sds = _state_dicts()
    tensors = {"G_AB." + k: v for k, v in sds["a2b"].items()}
    del tensors["G_AB.model.1.bias"]
    p = tmp_path / "m.safetensors"
    save_file(tensors, str(p), metadata={"cyclegan": meta.to_json()})
    with pytest.raises(ModelFileError, match="missing tensors model.1.bias"):
        read_model(p)
    tensors = {"G_AB." + k: v for k, v in sds["a2b"].items()}
    tensors["D_A.model.0.weight"] = torch.zeros(1)
    save_file(tensors, str(p), metadata={"cyclegan": meta.to_json()})
    with pytest.raises(ModelFileError, match="unexpected tensors D_A.model.0.weight"):
        read_model(p)
    save_file({"G_AB." + k: v for k, v in sds["a2b"].items()}, str(p))
    with pytest.raises(ModelFileError, match="not a cyclegan-sdk model file"):
        read_model(p)


def test_unsupported_dtype(tmp_path):
    meta = _meta()
    tensors = {"G_AB." + k: v for k, v in _state_dicts()["a2b"].items()}
    tensors["G_AB.model.1.bias"] = tensors["G_AB.model.1.bias"].to(torch.float64)
    p = tmp_path / "m.safetensors"
    save_file(tensors, str(p), metadata={"cyclegan": meta.to_json()})
    with pytest.raises(ModelFileError, match="G_AB.model.1.bias' has unsupported dtype F64"):
        read_model(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        read_model(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match="is a directory"):
        read_model(tmp_path)


def test_written_file_has_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_model(tmp_path / "m.safetensors", _state_dicts(), _meta())
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
