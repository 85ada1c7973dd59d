"""The checkpoint format on its own: wrapper-free keys, digests, pruning, partial reads."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from counterfeit.checkpoints import CheckpointError, CheckpointGone, list_checkpoints, load_module, read_checkpoint, save_checkpoint


class _Compiled(nn.Module):
    """Holds its module as torch.compile's OptimizedModule does (`_orig_mod`), without importing dynamo."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self._orig_mod = module


class _Parallel(nn.Module):
    """Holds its module as DistributedDataParallel does (`.module`)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_wrapped_modules_save_plain_keys_and_load_into_wrapped_or_plain(tmp_path):
    """DDP and compile wrappers, nested either way, leave no `module.`/`_orig_mod.` in the keys; loading unwraps too."""
    net = _net(0)
    path = save_checkpoint(tmp_path, 64, {"G": _Parallel(_Compiled(net)), "D": _Compiled(_Parallel(_net(1)))}, {}, {})
    tensors, state = read_checkpoint(path)
    assert state["cur_nimg"] == 64
    assert sorted(k for k in tensors if k.startswith("G.")) == sorted(f"G.{k}" for k in net.state_dict())
    assert not any("module" in k or "_orig_mod" in k for k in tensors)
    for target, plain in ((n := _net(2), n), (_Compiled(n := _net(2)), n), (_Parallel(_Compiled(n := _net(2))), n)):
        load_module(target, tensors, "G", path)
        for k, v in net.state_dict().items():
            assert torch.equal(plain.state_dict()[k], v), k


def test_only_the_newest_keep_checkpoints_stay(tmp_path):
    """Pruning keeps the newest `keep` files, ordered by image count."""
    for nimg in (10, 2000, 300, 40000):
        save_checkpoint(tmp_path, nimg, {"G": _net(0)}, {}, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-0000002000.safetensors", "ckpt-0000040000.safetensors"]


def test_a_partial_read_checks_only_the_slots_it_reads(tmp_path):
    """Damage in D's bytes fails a full read in one line but not a read of G alone (sampling reads only G_ema)."""
    path = save_checkpoint(tmp_path, 1, {"G": _net(0), "D": _net(1)}, {}, {})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["D.0.weight"][0, 0] += 1.0  # the stored digest no longer matches
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=meta)
    only_g, _ = read_checkpoint(path, prefixes=("G",))
    assert all(k.startswith("G.") for k in only_g)
    with pytest.raises(CheckpointError, match=r"the bytes of D do not match their SHA-256.*only checkpoint"):
        read_checkpoint(path)


def test_a_file_of_another_format_is_refused_by_name(tmp_path):
    """A safetensors file that is not ours names its format in the error."""
    from safetensors.torch import save_file

    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "checkpoints" / "ckpt-0000000001.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"is not a counterfeit checkpoint \(format 'pt'\)"):
        read_checkpoint(path)
    assert path.is_file()  # refused, not removed


def test_a_dtype_flipped_in_the_header_is_damage(tmp_path):
    """The digest covers each tensor's name, dtype and shape, not only its bytes: F32 read as I32 would load garbage."""
    path = save_checkpoint(tmp_path, 1, {"G": nn.Linear(3, 4)}, {}, {})
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n].decode()
    assert '"dtype":"F32"' in header
    flipped = header.replace('"dtype":"F32"', '"dtype":"I32"', 1)
    path.write_bytes(raw[:8] + flipped.encode() + raw[8 + n :])
    with pytest.raises(CheckpointError, match="SHA-256"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "state", ["[1, 2]", "{}", '{"cur_nimg": -5}', '{"cur_nimg": "64"}', '{"cur_nimg": true}', '{"cur_nimg": 64, "optimizer_groups": []}']
)
def test_a_hand_edited_training_state_is_refused_in_one_line(tmp_path, state):
    """Every reader indexes the state; a resume once truncated stats.jsonl to a cur_nimg of -5 before crashing."""
    from safetensors.torch import save_file

    path = save_checkpoint(tmp_path, 64, {"G": _net(0)}, {}, {})
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata={**meta, "state": state})
    with pytest.raises(CheckpointError, match="is not a readable checkpoint .*(state|optimizer_groups)"):
        read_checkpoint(path, prefixes=())


def test_a_checkpoint_deleted_as_it_is_read_is_gone_and_readers_take_the_newest(tiny_folder, tmp_path, monkeypatch):
    """A run in training prunes old checkpoints as others read them: torch's mmap said so as an uncaught RuntimeError."""
    import counterfeit.checkpoints as ckpt_module
    import counterfeit.runs as runs_module
    from counterfeit.cli import main
    from counterfeit.runs import load_run, load_slot, reached_nimg

    assert main(["train", "--data", tiny_folder, "--g-width", "8", "--d-width", "8", "--z-dim", "8", "--batch-size", "16",
                 "--kimg", "0.064", "--snapshot-kimg", "0.032", "--out", str(tmp_path), "--no-progress"]) == 0  # fmt: skip
    run = next(tmp_path.iterdir())
    real_open = ckpt_module.safe_open

    def pruned(path, framework):  # the trainer deletes the file between safetensors' open and torch's
        Path(path).unlink()
        raise RuntimeError(f"unable to open file <{path}> in read-only mode: No such file or directory")

    first, newest = list_checkpoints(run)
    monkeypatch.setattr(ckpt_module, "safe_open", pruned)
    (tmp_path / "copy").mkdir()
    with pytest.raises(CheckpointGone, match="was deleted as it was read"):
        read_checkpoint(shutil.copy(newest, tmp_path / "copy"))
    monkeypatch.setattr(ckpt_module, "safe_open", real_open)
    calls = []

    def once_pruned(path, prefixes=None):  # the newest goes as it is read: the re-listed newest is read instead
        calls.append(Path(path).name)
        if len(calls) == 1:
            Path(path).unlink()
            raise CheckpointGone(f"{path} was deleted")
        return read_checkpoint(path, prefixes)

    monkeypatch.setattr(runs_module, "read_checkpoint", once_pruned)
    loaded = load_run(run)
    assert loaded.checkpoint == first and calls == [newest.name, first.name] and reached_nimg(run) == 32
    monkeypatch.setattr(runs_module, "read_checkpoint", lambda path, prefixes=None: (_ for _ in ()).throw(CheckpointGone("gone")))
    with pytest.raises(CheckpointError, match="was deleted while this command used it .* run the command again"):
        load_slot(loaded, "D")  # its G came from that file: a D from another would not be its partner


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file systems there refuse names that are not UTF-8")
def test_a_damaged_header_in_a_folder_not_named_in_utf8_is_a_checkpoint_error(tmp_path):
    """Python reads such a folder's checkpoints itself: metadata that is not an object was an AttributeError (a traceback)."""
    import json
    import os
    import struct

    folder = tmp_path / os.fsdecode(b"caf\xe9") / "checkpoints"
    folder.mkdir(parents=True)
    header = json.dumps({"__metadata__": ["not", "an", "object"]}).encode()
    (folder / "ckpt-0000000001.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="metadata is not a JSON object"):
        read_checkpoint(folder / "ckpt-0000000001.safetensors")
