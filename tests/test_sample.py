"""The sampling path: seeded noise, the noise stream, PNG folders."""

import torch
from PIL import Image

from counterfeit.fileio import write_many
from counterfeit.sample import NoiseStream, make_noise, png_bytes


def test_noise_rows_do_not_depend_on_how_many_are_drawn():
    assert torch.equal(make_noise(1000, 8, seed=3)[:300], make_noise(300, 8, seed=3))
    assert not torch.equal(make_noise(10, 8, seed=3), make_noise(10, 8, seed=4))


def test_noise_stream_hands_out_make_noise_rows_in_chunks():
    stream = NoiseStream(8, seed=5)
    chunks = [stream.take(k) for k in (1, 255, 300, 7, 512)]  # across and inside the 256-row blocks
    assert [len(c) for c in chunks] == [1, 255, 300, 7, 512]
    assert torch.equal(torch.cat(chunks), make_noise(1075, 8, seed=5))


def test_write_many_writes_whole_files_and_leaves_no_temporaries(tmp_path):
    img = Image.new("L", (4, 4), 128)
    n = write_many(tmp_path / "out", ((f"{i:03d}.png", png_bytes(img)) for i in range(5)))
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert n == 5 and files == [f"{i:03d}.png" for i in range(5)]
    assert Image.open(tmp_path / "out" / "004.png").getpixel((0, 0)) == 128
