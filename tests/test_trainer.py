import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from cyclegan_sdk import Translator
from cyclegan_sdk.modelfile import read_model
from cyclegan_sdk.samples import disc_images, negatives_pair
from cyclegan_sdk.trainer import ImagePool, TrainConfig, Trainer

from reference_nets import ReferencePatchDiscriminator, ReferenceResnetGenerator, reference_step

TINY = dict(ngf=4, ndf=4, n_blocks=1, crop_size=32, load_size=36, precision="fp32", log_every=5)


@pytest.fixture(scope="module")
def pair():
    """Unpaired domains from real photos: crops of scikit-image samples (A) and colour-inverted other crops (B)."""
    from skimage import data

    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    crops = []
    for k in range(16):
        img = photos[k % 4]
        y, x = rng.integers(0, img.shape[0] - 48), rng.integers(0, img.shape[1] - 48)
        crops.append(img[y : y + 48, x : x + 48])
    a = np.stack(crops[:8])
    b = 255 - np.stack(crops[8:])
    return a, b


def test_config_defaults_are_the_reference():
    c = TrainConfig()
    assert (c.gan_mode, c.lambda_a, c.lambda_b, c.lambda_identity, c.pool_size) == ("lsgan", 10.0, 10.0, 0.5, 50)
    assert (c.lr, c.beta1, c.beta2, c.batch_size, c.init_gain) == (2e-4, 0.5, 0.999, 1, 0.02)
    assert (c.load_size, c.crop_size, c.ngf, c.ndf, c.n_blocks, c.norm) == (286, 256, 64, 64, 9, "instance")
    with pytest.raises(ValueError, match="gan_mode must be one of"):
        TrainConfig(gan_mode="relativistic")
    with pytest.raises(ValueError, match="load_size .* must be at least crop_size"):
        TrainConfig(load_size=100, crop_size=128)


def test_train_step_equals_the_reference_step():
    trainer = Trainer(TrainConfig(ngf=8, ndf=8, n_blocks=2, pool_size=0, precision="fp32", input_nc=3, output_nc=3))
    ref_g_a, ref_g_b = ReferenceResnetGenerator(ngf=8, n_blocks=2), ReferenceResnetGenerator(ngf=8, n_blocks=2)
    ref_d_a, ref_d_b = ReferencePatchDiscriminator(ndf=8), ReferencePatchDiscriminator(ndf=8)
    # reference names: D_A judges B images (ours: D_B), D_B judges A images (ours: D_A)
    pairs = [(ref_g_a, "G_AB"), (ref_g_b, "G_BA"), (ref_d_a, "D_B"), (ref_d_b, "D_A")]
    for ref, ours in pairs:
        ref.load_state_dict(trainer.networks[ours].state_dict())
    opt_g = torch.optim.Adam([*ref_g_a.parameters(), *ref_g_b.parameters()], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*ref_d_a.parameters(), *ref_d_b.parameters()], lr=2e-4, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        real_a = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        real_b = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        losses = trainer.train_step(real_a, real_b)
        ref_g, ref_da, ref_db = reference_step(ref_g_a, ref_g_b, ref_d_a, ref_d_b, opt_g, opt_d, real_a, real_b)
        assert losses["G"] == pytest.approx(ref_g, rel=1e-5)
        assert losses["D_B"] == pytest.approx(ref_da, rel=1e-5) and losses["D_A"] == pytest.approx(ref_db, rel=1e-5)
    for ref, ours in pairs:
        for (k, v), w in zip(ref.state_dict().items(), trainer.networks[ours].state_dict().values()):
            assert torch.allclose(v, w, atol=1e-6), (ours, k)
    assert set(losses) == {"G", "G_AB", "G_BA", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B"}


def test_image_pool_follows_the_reference():
    pool = ImagePool(3, torch.Generator().manual_seed(0))
    imgs = [torch.full((1, 1, 2, 2), float(k)) for k in range(20)]
    outs = [pool.query(x) for x in imgs]
    assert [int(o.flatten()[0]) for o in outs[:3]] == [0, 1, 2]  # filling: returned as they come
    later = [int(o.flatten()[0]) for o in outs[3:]]
    assert any(v != k for v, k in zip(later, range(3, 20)))  # sometimes an older image instead
    assert all(v <= k for v, k in zip(later, range(3, 20)))
    assert len(pool.images) == 3
    assert ImagePool(0, torch.Generator()).query(imgs[5]) is imgs[5]


def _weights(trainer):
    return {f"{n}.{k}": v.clone() for n, net in trainer.networks.items() for k, v in net.state_dict().items()}


def test_resume_continues_bit_for_bit(tmp_path, pair):
    a, b = pair
    straight = Trainer(**TINY, seed=3)
    straight.fit(a, b, steps=20)
    first = Trainer(**TINY, seed=3)
    first.fit(a, b, steps=20, checkpoint_every=10, checkpoint_path=tmp_path / "ck.safetensors")
    # the checkpoint written at step 10, resumed in a fresh trainer
    resumed = Trainer.resume(tmp_path / "ck.safetensors")
    assert resumed.step == 10 and resumed.total_steps == 20
    resumed.fit(a, b, steps=20)
    w1, w2 = _weights(straight), _weights(resumed)
    assert w1.keys() == w2.keys()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert straight.opt_g.state_dict()["state"][0]["step"] == resumed.opt_g.state_dict()["state"][0]["step"]


def test_a_killed_checkpoint_write_never_breaks_the_latest(tmp_path, pair):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.path.dirname(os.path.dirname(__file__)))!r})
        from cyclegan_sdk.trainer import Trainer
        t = Trainer(ngf=8, ndf=8, n_blocks=3, crop_size=32, load_size=36, precision="fp32", input_nc=3, output_nc=3)
        path = sys.argv[1]
        t.save_checkpoint(path)
        print("ready", flush=True)
        while True:
            t.step += 1
            t.save_checkpoint(path)
    """)
    path = tmp_path / "latest.safetensors"
    rng = np.random.default_rng(0)
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        resumed = Trainer.resume(path)  # loads, whatever moment the kill hit
        assert resumed.built and resumed.step >= 0


def test_stop_request_is_honoured_within_a_step(tmp_path, pair):
    a, b = pair
    trainer = Trainer(**TINY)
    seen = []

    def stop_at_5(event):
        seen.append(event.step)
        if event.kind == "step" and event.step >= 5:
            trainer.request_stop()

    trainer.fit(a, b, steps=1000, callbacks=[stop_at_5])
    assert trainer.step == 5
    out = trainer.translator().translate(a[0])
    assert out.shape == a[0].shape and out.dtype == np.uint8


def test_events_previews_and_export(tmp_path, pair):
    a, b = pair
    trainer = Trainer(**{**TINY, "preview_every": 4}, domain_names=("photo", "negative"))
    events = []
    summary = trainer.fit(list(a), b, steps=8, callbacks=[events.append])
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 2 and kinds.count("preview") == 2 and kinds[-1] == "end"
    assert [e.step for e in events if e.kind == "epoch"] == [8]  # 8 images a domain: one epoch is 8 steps
    step = next(e for e in events if e.kind == "step")
    # 8 steps: constant for 4, then linear decay (lr reported for the next step, the 6th)
    assert step.step == 5 and step.images_per_s > 0 and step.eta_s >= 0 and step.lr == pytest.approx(2e-4 * 3 / 5)
    assert {"G", "D_A", "D_B", "cycle_A", "idt_A"} <= set(step.losses)
    preview = next(e for e in events if e.kind == "preview").images
    assert set(preview) == {"real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B"}
    assert all(v.shape == (32, 32, 3) and v.dtype == np.uint8 for v in preview.values())
    path = trainer.export(tmp_path / "m.safetensors")
    _, meta = read_model(path)
    assert (meta.domain_a.name, meta.domain_b.name) == ("photo", "negative")
    assert meta.training["steps"] == 8 == summary["steps"] and meta.source["kind"] == "trained"
    assert Translator.load(path).translate(a[0]).shape == a[0].shape


def test_learning_rate_constant_then_linear_decay():
    trainer = Trainer(**TINY)
    trainer.total_steps = 100
    lrs = [trainer.learning_rate(s) for s in range(100)]
    assert lrs[0] == lrs[49] == 2e-4
    assert lrs[50] < 2e-4 and lrs[99] < lrs[98] and lrs[99] == pytest.approx(2e-4 / 51)
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))


def test_grey_to_rgb_domains_and_dihedral_augmentation(pair):
    a, b = pair
    trainer = Trainer(**{**TINY, "augment": "dihedral", "preprocess": "crop"})
    with pytest.warns(UserWarning, match="identity loss is off: domain A has 1 channels and domain B 3"):
        trainer.fit(a[..., 0], b, steps=3)  # (N, H, W) stack of grey images -> RGB
    assert (trainer.input_nc, trainer.output_nc) == (1, 3)
    out = trainer.translator().translate(a[0, ..., 0])
    assert out.shape == (48, 48, 3)


def test_bad_training_data_is_a_clear_message(tmp_path, pair):
    a, b = pair
    from cyclegan_sdk.files import write_image

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="domain A: no images"):
        Trainer(**TINY).fit(empty, b, steps=1)
    mixed = [a[0], a[1], np.zeros((48, 48, 2), np.uint8)]
    with pytest.raises(ValueError, match="domain A mixes channel counts: 3-channel: 2 .*2-channel: 1"):
        Trainer(**TINY).fit(mixed, b, steps=1)
    # mostly RGB with a grey and an RGBA image: all used as RGB, with one warning
    with pytest.warns(UserWarning, match="domain A: 2 of 4 images are grey or RGBA and are used as RGB"):
        Trainer(**TINY).fit([a[0], a[1], a[2, ..., 0], np.dstack([a[3], a[3, ..., :1]])], b, steps=1)
    with pytest.raises(ValueError, match="crop_size must be a multiple of 4"):
        Trainer(**{**TINY, "crop_size": 30})
    folder = tmp_path / "b"
    for k in range(3):
        write_image(folder / f"{k}.png", b[k])
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=r"domain B: skipping 1 unreadable of 4 images .*broken.png"):
        Trainer(**TINY).fit(a, folder, steps=1)
    with pytest.warns(UserWarning, match="8 of 8 images are smaller than the 64 crop and are scaled up"):
        Trainer(**{**TINY, "crop_size": 64, "preprocess": "crop"}).fit(a, b, steps=1)
    with pytest.raises(ValueError, match="give steps= or epochs="):
        Trainer(**TINY).fit(a, b)


def test_ema_weights_are_exported(pair, tmp_path):
    a, b = pair
    trainer = Trainer(**TINY, ema_decay=0.9)
    trainer.fit(a, b, steps=4)
    raw = trainer.networks["G_AB"].state_dict()
    exported = trainer.generator_state_dicts()["a2b"]
    assert any(not torch.equal(raw[k], exported[k]) for k in raw if raw[k].is_floating_point())
    trainer.save_checkpoint(tmp_path / "ck.safetensors")
    again = Trainer.resume(tmp_path / "ck.safetensors")
    assert all(torch.equal(exported[k], v) for k, v in again.generator_state_dicts()["a2b"].items())


def test_learns_an_easy_translation():
    """Images -> their negatives, from unpaired sets: after 300 steps far closer to the answer than doing nothing."""
    a, b = negatives_pair(16)  # B: negatives of other images, so nothing is paired
    # A small network on a short run: a higher learning rate than the reference's 2e-4. With these settings
    # seeds 0-3 all reach an error of about 19 (identity: 113); ngf 8 at lr 1e-3 lands there for half the seeds only.
    trainer = Trainer(ngf=16, ndf=8, n_blocks=2, crop_size=32, load_size=40, lr=5e-4, seed=0, log_every=50)
    trainer.fit(a, b, steps=300)
    test = disc_images(8, seed=2)[:, 8:40, 8:40]
    answer = 255.0 - test
    out = trainer.translator().translate(test).astype(np.float64)
    error, identity_error = np.abs(out - answer).mean(), np.abs(test - answer).mean()
    assert error < 0.3 * identity_error, (error, identity_error)
    cycle = trainer.history[-1]["cycle_A"]
    assert cycle < trainer.history[0]["cycle_A"]


def test_two_processes_train_identical_weights_and_write_one_file(tmp_path, pair):
    """Data-parallel training with 2 CPU processes (gloo), launched by torchrun as on a GPU node."""
    a, b = pair
    from cyclegan_sdk.files import write_image

    for k in range(len(a)):
        write_image(tmp_path / "A" / f"{k}.png", a[k])
        write_image(tmp_path / "B" / f"{k}.png", b[k])
    script = tmp_path / "train_ddp.py"
    script.write_text(textwrap.dedent(f"""
        import hashlib, os, sys
        sys.path.insert(0, {str(os.path.dirname(os.path.dirname(__file__)))!r})
        import torch
        from cyclegan_sdk.trainer import Trainer
        t = Trainer(ngf=4, ndf=4, n_blocks=1, crop_size=32, load_size=36, precision="fp32", log_every=2)
        t.fit({str(tmp_path / "A")!r}, {str(tmp_path / "B")!r}, steps=4)
        digest = hashlib.sha256()
        for name, net in sorted(t.networks.items()):
            for k, v in net.state_dict().items():
                digest.update(v.numpy().tobytes())
        open(os.path.join({str(tmp_path)!r}, f"rank{{t._dist.rank}}.sha"), "w").write(digest.hexdigest())
        t.export({str(tmp_path / "out" / "m.safetensors")!r})
        t.save_checkpoint({str(tmp_path / "out" / "ck.safetensors")!r})
        t.finish()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", str(script)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    hashes = [(tmp_path / f"rank{r}.sha").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ck.safetensors", "m.safetensors"]
    summary = read_model(tmp_path / "out" / "m.safetensors")[1].training
    assert summary["processes"] == 2 and summary["steps"] == 4


def test_failed_compilation_falls_back_to_identical_eager_training(pair, monkeypatch):
    a, b = pair
    eager = Trainer(**TINY, compile=False, seed=4)
    eager.fit(a, b, steps=3)

    def broken_compile(module, *args, **kwargs):
        def run(*inputs):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    fallback = Trainer(**TINY, compile=True, seed=4)
    with pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler found.*training eagerly"):
        fallback.fit(a, b, steps=3)
    w1, w2 = _weights(eager), _weights(fallback)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
