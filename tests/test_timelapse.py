"""Training timelapse: grids in kimg order, thinned to at most MAX_FRAMES, written at the end of training and by the report."""

import numpy as np
from PIL import Image

from counterfeit.report import write_report
from counterfeit.timelapse import LABEL_PX, MAX_FRAMES, evenly, sample_grids, timelapse_gif, write_timelapse


def _grids(run, kimgs):
    """One uniform grid per kimg, its grey level rising with kimg, so frame order can be read back from pixels."""
    (run / "samples").mkdir(parents=True)
    for i, kimg in enumerate(kimgs):
        Image.fromarray(np.full((62, 62), 50 + i, dtype=np.uint8)).save(run / "samples" / f"fakes{kimg:08.1f}kimg.png")
    Image.fromarray(np.zeros((62, 62), dtype=np.uint8)).save(run / "samples" / "reals.png")  # not a frame


def _frame_levels(path):
    with Image.open(path) as gif:
        levels = []
        for i in range(gif.n_frames):
            gif.seek(i)
            levels.append(gif.convert("L").getpixel((31, LABEL_PX + 31)))  # below the kimg caption
        return levels, gif.size


def test_frames_follow_kimg_and_are_thinned(tmp_path):
    run = tmp_path / "run"
    kimgs = [k * 4.0 for k in range(1, 101)]  # 100 grids, 4 ... 400 kimg
    _grids(run, kimgs)
    assert [k for k, _ in sample_grids(run)] == kimgs
    path = write_timelapse(run)
    assert path == run / "samples" / "timelapse.gif"
    levels, size = _frame_levels(path)
    assert size == (62, 62 + LABEL_PX)
    want = [50 + i for i in evenly(list(range(100)), MAX_FRAMES)]
    assert len(levels) == MAX_FRAMES and levels == want and levels[0] == 50 and levels[-1] == 149  # first and last kept


def test_caption_band_and_no_grids(tmp_path):
    run = tmp_path / "run"
    _grids(run, [0.5, 20.0])
    with Image.open(write_timelapse(run)) as gif:
        band = np.asarray(gif.convert("L"))[:LABEL_PX]
    assert band.max() > 200 and (band == 40).mean() > 0.5  # light kimg text (antialiased) on the dark band
    empty = tmp_path / "empty"
    empty.mkdir()
    assert timelapse_gif(empty) is None and write_timelapse(empty) is None


def test_training_writes_it_and_the_report_embeds_it(tiny_cond_run):
    grids = sample_grids(tiny_cond_run)
    gif = tiny_cond_run / "samples" / "timelapse.gif"
    assert len(grids) >= 2 and gif.is_file()
    with Image.open(gif) as im:
        assert im.n_frames == len(grids)
    page = write_report(tiny_cond_run).read_text()
    assert page.count("data:image/gif;base64,") == 1 and "Timelapse" in page


def test_a_damaged_grid_costs_its_frame_not_the_gif_or_the_report(tiny_cond_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_cond_run, run)
    grids = sample_grids(run)
    grids[0][1].write_bytes(b"not a png")
    with Image.open(write_timelapse(run)) as im:
        assert im.n_frames == len(grids) - 1
    assert "Timelapse" in write_report(run).read_text()
