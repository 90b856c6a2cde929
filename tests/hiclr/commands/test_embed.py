"""`extract_features` and `hiclr embed`: frozen features of a split, end to end on a tiny store."""

import numpy as np
import pytest
import torch

from hiclr.augment.streams import to_stream
from hiclr.common.command_line import run_cli
from hiclr.features import extract_features
from hiclr.models import STGCN, save_encoder
from tests.hiclr.test_data import write_tiny_store


def embed(argv):
    """`hiclr embed ...` through the shared CLI driver (the embed module only)."""
    return run_cli("hiclr", "test", "hiclr.commands", ["embed"], "", ["embed", *argv])


def _trained_like_encoder(width=2, seed=0):
    torch.manual_seed(seed)
    model = STGCN(width=width).train()
    with torch.no_grad():
        model(torch.randn(4, 3, 50, 25, 2))  # BN running statistics away from their init
    return model


def test_extract_features_is_batched_eval_mode_and_gradient_free():
    model = _trained_like_encoder()
    x = torch.randn(7, 3, 50, 25, 2)
    feats = extract_features(model, x, batch_size=3, stream="joint")
    assert model.training  # the caller's mode is restored
    assert feats.shape == (7, 32) and not feats.requires_grad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(feats, model(x), atol=1e-5, rtol=1e-5)
    motion = extract_features(model, x, batch_size=4, stream="motion")
    with torch.no_grad():
        torch.testing.assert_close(motion, model(to_stream(x, "motion")), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stream", ["joint", "bone"])
def test_embed_writes_the_features_names_and_labels_of_the_split(tmp_path, capsys, stream):
    data = tmp_path / "tiny.h5"
    frame50, labels, names, splits = write_tiny_store(data)
    model = _trained_like_encoder()
    ckpt = save_encoder(tmp_path / "encoder.pt", model, {"name": "stgcn", "width": 2}, stream)
    out = tmp_path / "feats" / "xsub_test.npz"

    rc = embed(
        [
            "--encoder",
            str(ckpt),
            "--data",
            str(data),
            "--split",
            "xsub/test",
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert "embed:" in capsys.readouterr().out
    index = splits["xsub"]["test"]
    with np.load(out) as result:
        assert set(result.files) == {"features", "names", "labels", "index"}
        assert result["names"].tolist() == [names[i] for i in index]
        np.testing.assert_array_equal(result["labels"], labels[index])
        np.testing.assert_array_equal(result["index"], index)
        model.eval()
        with torch.no_grad():
            expected = model(to_stream(torch.from_numpy(frame50[index]), stream)).numpy()
        assert result["features"].dtype == np.float32
        np.testing.assert_allclose(result["features"], expected, atol=1e-5, rtol=1e-5)
    assert not list(out.parent.glob("*.partial"))


def test_embed_all_reads_a_reference_release_checkpoint(tmp_path):
    data = tmp_path / "tiny.h5"
    frame50, _, names, _ = write_tiny_store(data, num_samples=5)
    model = _trained_like_encoder(seed=1).eval()
    state = {f"encoder_q.{k}": v for k, v in model.state_dict().items()}
    state |= {f"encoder_k.{k}": torch.zeros_like(v) for k, v in model.state_dict().items()}
    state |= {"queue": torch.randn(32, 8), "queue_ptr": torch.zeros(1, dtype=torch.long)}
    ckpt = tmp_path / "release.pth.tar"
    torch.save({"state_dict": state}, ckpt)
    out = tmp_path / "all.npz"
    assert embed(["--encoder", str(ckpt), "--data", str(data), "--split", "all", "--out", str(out)]) == 0
    with np.load(out) as result:
        assert result["names"].tolist() == names
        with torch.no_grad():
            expected = model(torch.from_numpy(frame50)).numpy()
        np.testing.assert_allclose(result["features"], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "split,message",
    [("xsub", "not PROTOCOL/PART"), ("xset/test", "no protocol 'xset'"), ("xsub/dev", "not PROTOCOL/PART")],
)
def test_embed_bad_split_is_one_line_error_and_writes_nothing(tmp_path, capsys, split, message):
    data = tmp_path / "tiny.h5"
    write_tiny_store(data, num_samples=4)
    ckpt = save_encoder(tmp_path / "encoder.pt", STGCN(width=2), {"name": "stgcn", "width": 2}, "joint")
    out = tmp_path / "f.npz"
    rc = embed(["--encoder", str(ckpt), "--data", str(data), "--split", split, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("hiclr: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_embed_refuses_a_checkpoint_without_an_encoder(tmp_path, capsys):
    data = tmp_path / "tiny.h5"
    write_tiny_store(data, num_samples=4)
    ckpt = tmp_path / "head.pt"
    torch.save({"fc.weight": torch.zeros(4, 32)}, ckpt)
    out = tmp_path / "f.npz"
    assert embed(["--encoder", str(ckpt), "--data", str(data), "--split", "all", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "head.pt holds no encoder weights" in err and not out.exists()
