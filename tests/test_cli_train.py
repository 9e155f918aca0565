"""``cyclegan train``: files a user looks at, Ctrl-C, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from cyclegan_sdk import Translator, read_metadata
from cyclegan_sdk.cli import main
from cyclegan_sdk.files import write_image

TINY = ["--crop", "32", "--load-size", "36", "--ngf", "4", "--ndf", "4", "--blocks", "1", "--precision", "fp32"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("data")
    img = data.astronaut()
    for k in range(4):
        write_image(root / "photos" / f"{k}.png", img[k * 100 : k * 100 + 48, 100:148])
        write_image(root / "negatives" / "sub" / f"{k}.jpg", 255 - img[k * 100 + 20 : k * 100 + 68, 200:248])
    return root / "photos", root / "negatives"


def test_train_writes_model_log_previews_and_plot(tmp_path, capsys, folders):
    out = tmp_path / "run" / "p2n.safetensors"
    args = ["train", str(folders[0]), str(folders[1]), "-o", str(out), "--steps", "12", "--log-every", "4",
            "--preview-every", "6", "--domains", "photo", "negative", *TINY]
    assert main(args) == 0, capsys.readouterr().err
    meta = read_metadata(out)
    assert (meta.domain_a.name, meta.domain_b.name) == ("photo", "negative")
    assert meta.training["steps"] == 12
    lines = [json.loads(line) for line in (tmp_path / "run" / "p2n.losses.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [4, 8, 12]
    assert {"G", "D_A", "D_B", "cycle_A", "images_per_s", "lr"} <= set(lines[0])
    previews = sorted((tmp_path / "run" / "p2n.previews").iterdir())
    assert [p.name for p in previews] == ["step_0000006.png", "step_0000012.png"]
    grid = np.asarray(Image.open(previews[-1]))
    assert grid.shape[0] > 2 * 128 and grid.shape[1] > 3 * 128  # two rows of three 128-pixel panels
    plot = Image.open(tmp_path / "run" / "p2n.losses.png")
    assert plot.size == (800, 450) and len(set(np.asarray(plot).reshape(-1, 3)[:, 0].tolist())) > 5
    assert Translator.load(out).translate(np.zeros((40, 40, 3), np.uint8)).shape == (40, 40, 3)
    assert "wrote" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_a_model_then_resume_continues(tmp_path, folders):
    out = tmp_path / "m.safetensors"
    cmd = [sys.executable, "-m", "cyclegan_sdk", "train", str(folders[0]), str(folders[1]), "-o", str(out),
           "--steps", "100000", "--log-every", "2", "--preview-every", "0", *TINY]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "m.losses.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    checkpoint = tmp_path / "m.checkpoint.safetensors"
    assert checkpoint.is_file() and out.is_file()
    stopped_at = read_metadata(out).training["steps"]
    assert stopped_at >= 2
    # steps logged after the checkpoint (none here, or a few when the kill came late) are logged once only
    with open(log, "a") as fh:
        fh.write(json.dumps({"step": stopped_at + 1, "G": 0.0}) + "\n")
    assert main(["train", str(folders[0]), str(folders[1]), "-o", str(out), "--resume", str(checkpoint),
                 "--steps", str(stopped_at + 4), "--log-every", "2"]) == 0
    assert read_metadata(out).training["steps"] == stopped_at + 4
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == stopped_at + 4


def test_bad_training_input_is_one_line(tmp_path, capsys, folders):
    (tmp_path / "empty").mkdir()
    code = main(["train", str(tmp_path / "empty"), str(folders[1]), "-o", str(tmp_path / "m.safetensors"),
                 "--steps", "2", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("cyclegan: error: domain A: no images")
    assert main(["train", str(folders[0]), str(folders[1]), "-o", str(tmp_path / "m.pt"), "--steps", "2"]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    assert main(["train", str(folders[0]), str(folders[1]), "-o", str(tmp_path / "m.safetensors"), *TINY]) == 2
    assert "give --steps N or --epochs N" in capsys.readouterr().err


def test_cli_train_under_torchrun_writes_one_model(tmp_path, folders):
    """`torchrun --nproc_per_node 2 -m cyclegan_sdk.cli train ...`: two CPU processes, files from the first only."""
    out = tmp_path / "ddp" / "m.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "cyclegan_sdk.cli", "train", str(folders[0]), str(folders[1]), "-o", str(out), "--steps", "4",
           "--log-every", "2", "--preview-every", "2", *TINY]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_metadata(out).training["processes"] == 2
    lines = (tmp_path / "ddp" / "m.losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]  # one log, not one per process
    assert len(list((tmp_path / "ddp" / "m.previews").iterdir())) == 2


def test_sixteen_bit_microscopy_with_percentile_scaling(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for k in range(3):
        write_image(tmp_path / "he" / f"{k}.tif", rng.integers(1000, 4000, (40, 40)).astype(np.uint16))
        write_image(tmp_path / "ihc" / f"{k}.tif", rng.integers(200, 900, (40, 40)).astype(np.uint16))
    out = tmp_path / "m.safetensors"
    args = ["train", str(tmp_path / "he"), str(tmp_path / "ihc"), "-o", str(out), "--steps", "2",
            "--value-scaling", "percentile", "--augment", "dihedral", *TINY]
    assert main(args) == 0, capsys.readouterr().err
    meta = read_metadata(out)
    a, b = meta.domain_a.scaling, meta.domain_b.scaling
    assert a.mode == b.mode == "range" and 1000 <= a.low < a.high <= 4000 and 200 <= b.low < b.high <= 900
    result = Translator.load(out).translate(rng.integers(1000, 4000, (40, 40)).astype(np.uint16))
    assert result.dtype == np.uint16 and b.low - 1 <= result.min() and result.max() <= b.high + 1
