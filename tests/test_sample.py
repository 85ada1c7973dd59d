"""The sampling path: seeded noise, the noise stream, PNG folders, discriminator rejection sampling."""

import numpy as np
import pytest
import torch
from PIL import Image

from counterfeit.fileio import write_many
from counterfeit.sample import NoiseStream, make_noise, png_bytes, rejection_sample, sample, scatter_image


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


class _Shift(torch.nn.Module):
    """A stand-in G: z (N, 2) -> z + 1 (N, 2)."""

    z_dim = 2

    def forward(self, z, labels=None):
        return z + 1.0


class _NearOrigin(torch.nn.Module):
    """A stand-in D whose logit says: the nearer the origin, the more real."""

    def forward(self, x, labels=None):
        return -4.0 * x.pow(2).sum(1)  # (N,)


def test_rejection_sampling_keeps_what_d_prefers_reproducibly():
    G, D = _Shift().eval(), _NearOrigin().eval()
    kept, acceptance = rejection_sample(G, D, 500, seed=3, percentile=90)
    plain = sample(G, make_noise(500, 2, seed=3))
    assert kept.shape == (500, 2) and 0 < acceptance < 0.5
    assert kept.norm(dim=1).mean() < 0.7 * plain.norm(dim=1).mean()  # pulled toward what D calls real
    again, _ = rejection_sample(G, D, 500, seed=3, percentile=90)
    assert torch.equal(kept, again) and not torch.equal(kept, rejection_sample(G, D, 500, seed=4)[0])
    assert rejection_sample(G, D, 200, seed=3, percentile=100)[1] < acceptance  # a higher bar keeps fewer


def test_drs_says_when_it_barely_filters_and_when_its_d_gives_no_log_ratio():
    """A ducks-cows --drs 80 kept 97.8 % of its candidates and said nothing: the user read PCT as the share rejected."""
    from counterfeit.export import drs_notes

    [note] = drs_notes("ns", 80, 0.978)
    assert note.startswith("--drs 80 barely filters") and "turned away 2.2 % of them where it could have turned away up to 80 %" in note
    assert drs_notes("ns", 90, 0.58) == drs_notes("ns", 80, 0.897) == []  # ring8's D turned away 47 %; 13 % still evened out modes
    assert drs_notes("ns", 10, 0.95) == drs_notes("minimax", 90, 0.5) == []  # a low PCT keeps most by design, not by D
    [note] = drs_notes("hinge", 90, 0.58)
    assert "hinge loss" in note and "does not estimate log(p_real / p_fake)" in note and "heuristic" in note


def test_rejection_sampling_refuses_what_it_cannot_do():
    G, D = _Shift().eval(), _NearOrigin().eval()
    with pytest.raises(ValueError, match="percentile"):
        rejection_sample(G, D, 10, seed=0, percentile=0)
    D.pack = 2
    with pytest.raises(ValueError, match="packs.*drop --drs"):
        rejection_sample(G, D, 10, seed=0)
    D.pack, G.num_classes = 1, 3
    with pytest.raises(ValueError, match="unconditional"):
        rejection_sample(G, D, 10, seed=0)
    G.num_classes = 0
    with pytest.raises(ValueError, match="too few"):
        rejection_sample(
            G, lambda x: torch.full((len(x),), -1e4).index_fill(0, torch.tensor([0]), 0.0), 10, seed=0, percentile=100, max_draws=3
        )


def test_a_conditional_grid_holds_the_npz_images_whatever_n(tiny_cond_run, tmp_path):
    """Image i of a seed is the same in a grid as in an npz, for any n: the grid only places it in its class's row.

    (A grid used to relabel its images one class per row, so its images changed with n and differed from the npz's.)
    """
    from counterfeit.export import write_samples
    from counterfeit.sample import GRID_BACKGROUND, grid_by_class, image_grid

    npz = np.load(write_samples(tiny_cond_run, 7, 3, "npz", tmp_path / "a.npz"))
    images, labels = torch.from_numpy(npz["images"]).permute(0, 3, 1, 2), torch.from_numpy(npz["labels"])  # (7, 1, 28, 28), (7,)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1, 0]
    for n in (3, 7):
        grid = np.asarray(Image.open(write_samples(tiny_cond_run, n, 3, "grid", tmp_path / f"g{n}.png")))
        tiles, ncol = grid_by_class(images[:n], labels[:n])
        assert np.array_equal(grid, np.asarray(image_grid(tiles, ncol)))
    tiles, ncol = grid_by_class(images, labels)
    assert ncol == 4 and torch.equal(tiles[:4], images[[0, 2, 4, 6]]) and torch.equal(tiles[4:7], images[[1, 3, 5]])
    assert (tiles[7] == GRID_BACKGROUND).all()  # the short row is padded with the grid's background


def test_a_named_class_makes_a_plain_grid_whether_given_as_text_or_a_number():
    """class 0 given from Python as a number once fell through the 'no class named' test and got class rows."""
    from counterfeit.export import grid_tiles

    x, labels = torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.int64)  # (6, 1, 4, 4), (6,)
    for name in (0, "0", 1, "Bag"):
        tiles, ncol = grid_tiles(x, labels, name)
        assert tiles is x and ncol is None
    assert grid_tiles(x, labels, None)[1] is not None


def test_uint8_round_trip_reaches_both_ends_of_the_range():
    """255 is the top of G's range, not 255/256 of it, and pixels round to the nearest grey level (not down)."""
    from counterfeit.sample import from_uint8, to_uint8

    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)  # (1, 1, 16, 16) every grey level
    for pixel_range in ((-1.0, 1.0), (0.0, 1.0)):
        f = from_uint8(x, pixel_range)
        assert f.min() == pixel_range[0] and f.max() == pixel_range[1]
        assert torch.equal(to_uint8(f, pixel_range), x)
    assert to_uint8(torch.tensor([0.999]), (-1.0, 1.0)).item() == 255


def test_sample_keeps_each_label_with_its_noise_across_batches():
    """Each batch of a long draw takes its own slice of the labels (export with 3 classes over several batches)."""

    class Echo(torch.nn.Module):
        def forward(self, z, labels):
            """(N, z_dim), (N,) -> (N, 1): the label itself."""
            return labels.float()[:, None] + 0 * z[:, :1]

    labels = torch.arange(10) % 3  # (10,)
    out = sample(Echo(), torch.randn(10, 2), labels, batch_size=4)  # (10, 1)
    assert torch.equal(out[:, 0], labels.float())


def test_a_scatter_plot_says_which_colour_is_which():
    """The learner's audit: green and grey dots with no legend; real points only listed where they were drawn."""
    pts = torch.zeros(10, 2)  # (10, 2) all at the centre, far from the legend's corner

    def legend_colours(img: Image.Image, width: int) -> set:
        corner = np.asarray(img)[-20:, :width].reshape(-1, 3)  # the swatches along the bottom left
        return {tuple(c) for c in corner} - {(255, 255, 255)}

    assert legend_colours(scatter_image(pts, reals=pts + 0.5), 100) >= {(150, 150, 150), (20, 150, 60)}
    alone = legend_colours(scatter_image(pts), 14)  # the first swatch only: the text beside it is antialiased grey
    assert (20, 150, 60) in alone and (150, 150, 150) not in alone


def test_a_scatter_plots_legend_stays_off_the_points():
    """Two legend rows reached up over grid25's bottom-left mode, hiding its lowest points."""
    size, edge = 512, 4.0
    dot = torch.full((1, 2), 1e-3)  # at the centre, far from the legend; the plot spans +/-1.1 times the farthest point
    img = np.asarray(scatter_image(dot, reals=dot, lim=edge * 1.1, size=size))
    ink = (np.abs(img.astype(int) - 90).max(axis=2) < 40) & (np.arange(size)[:, None] > size // 2)  # the legend's text
    lowest = size / 2 + (size / 2 - 4) / 1.1 + 1.5  # the lowest pixel a dot at -edge reaches
    assert ink.any() and np.nonzero(ink)[0].min() > lowest, (np.nonzero(ink)[0].min(), lowest)


def test_a_scatter_plot_names_its_axes_and_counts_the_fakes_it_cannot_show():
    """A toy's plots had no kimg, no axis names (ducks-cows: weight, size), and left fakes beyond the axes out unsaid."""
    pts = torch.tensor([[0.0, 0.0], [5.0, 0.0], [float("nan"), 0.0]])  # (3, 2): one inside, two that cannot be drawn
    plain = np.asarray(scatter_image(pts[:1], lim=1.0))
    top_right = np.asarray(scatter_image(pts[:1], lim=1.0, title="40.0 kimg"))[:16, 256:]
    assert (top_right != plain[:16, 256:]).any()  # the title is written top right
    counted = np.asarray(scatter_image(pts, lim=1.0, title="40.0 kimg"))[:16]
    assert (counted != np.asarray(scatter_image(pts[:1], lim=1.0, title="40.0 kimg"))[:16]).any()  # '2 of 3 fakes off the plot'
    named = np.asarray(scatter_image(pts[:1], lim=1.0, axes=["weight", "size"]))[:16, :256]
    assert (named != plain[:16, :256]).any()


def test_a_long_scatter_title_keeps_clear_of_the_axes_line():
    """sample --drs on ducks-cows wrote '2500 fakes, seed 0, --drs 80 kept 45.3% ...' over '(x: weight, y: size)'."""
    pts = torch.tensor([[0.0, 0.0], [5.0, 0.0]])  # (2, 2): one off the plot, so the count joins the title
    axes, title = ["weight", "size"], "2500 fakes, seed 0, --drs 80 kept 45.3% of the candidates"
    left = np.asarray(scatter_image(pts[:1], lim=1.0, axes=axes))  # the axes line alone
    both = np.asarray(scatter_image(pts, lim=1.0, axes=axes, title=title))
    left_ink = np.nonzero((left[:16] != 255).any(axis=2).any(axis=0))[0]
    title_ink = np.nonzero((both[:16] != left[:16]).any(axis=2).any(axis=0))[0]
    assert (both != left).any()  # the title is on the picture
    assert len(title_ink) == 0 or title_ink.min() > left_ink.max() + 4, (title_ink.min(), left_ink.max())


def test_a_scatter_plots_words_stay_readable_over_stray_fakes():
    """A G that strays fills the corners with green dots, which ran through the axes line and the title."""
    g = torch.Generator().manual_seed(0)
    stray = torch.rand(20000, 2, generator=g) * 2 - 1  # (20000, 2) covering the whole plot, corners included
    img = np.asarray(scatter_image(stray, lim=1.0, title="40.0 kimg"))
    words = img[5:14, 6:60]  # inside 'axes: +/-1.00'
    assert not (words == (20, 150, 60)).all(axis=-1).any()  # no dot shows through the words' box
