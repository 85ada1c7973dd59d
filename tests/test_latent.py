"""The latent space: lerp and slerp, the arithmetic parser, projection, and the three CLI commands on tiny runs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from counterfeit.cli import main
from counterfeit.config import ConfigError, make_config
from counterfeit.latent import Latent, lerp, slerp
from counterfeit.latent.expr import parse_endpoint, parse_expression
from counterfeit.latent.operands import load_latent, save_latent
from counterfeit.latent.project import pixel_error, project_encoder, project_gan
from counterfeit.latent.space import decode, path
from counterfeit.models import build_models

SHORT = ["--kimg", "0.064", "--tick-kimg", "0.032", "--snapshot-kimg", "0.032", "--sample-kimg", "0.032", "--no-progress"]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


# --- interpolation ---------------------------------------------------------------------------------------------


def test_slerp_endpoints_and_unit_sphere():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 16, generator=g), torch.randn(5, 16, generator=g)
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    for t in (0.1, 0.5, 0.9):
        assert torch.allclose(slerp(a, b, t).norm(dim=1), torch.ones(5), atol=1e-5)  # stays on the sphere
        assert (lerp(a, b, t).norm(dim=1) < 1 - 1e-3).all()  # lerp cuts through the inside
    mid = slerp(a, b, 0.5)
    # the midpoint is equally far from both ends, on the great circle through them
    assert torch.allclose((mid * a).sum(1), (mid * b).sum(1), atol=1e-5)


def test_slerp_norms_stay_between_and_angles_are_even():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 64, generator=g), 2.0 * torch.randn(3, 64, generator=g)
    ts = torch.linspace(0, 1, 11)
    out = slerp(a[:, None], b[:, None], ts[None, :])  # (3, 11, 64) batched over rows and t
    norms = out.norm(dim=-1)  # (3, 11)
    lo = torch.minimum(a.norm(dim=1), b.norm(dim=1))[:, None]
    hi = torch.maximum(a.norm(dim=1), b.norm(dim=1))[:, None]
    assert ((norms >= lo - 1e-4) & (norms <= hi + 1e-4)).all()
    cos = torch.nn.functional.cosine_similarity(out[:, :-1], out[:, 1:], dim=-1)  # (3, 10) angle of each step
    assert torch.allclose(cos, cos[:, :1].expand_as(cos), atol=1e-5)  # constant angular speed
    assert torch.allclose(lerp(a, b, 0.25), 0.75 * a + 0.25 * b)


def test_slerp_of_parallel_zero_and_opposite_vectors_is_finite():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    for b in (a.clone(), a * (1 + 1e-7), 2 * a, torch.zeros_like(a), -a):
        out = slerp(a[:, None], b[:, None], torch.linspace(0, 1, 5)[None])  # (1, 5, 3)
        assert torch.isfinite(out).all() and torch.allclose(out[:, 0], a) and torch.allclose(out[:, -1], b, atol=1e-6)
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a, atol=1e-6)  # parallel: plain lerp
    # A point walked to itself stays put bit for bit (arccos once rounded identical vectors to an angle of ~6e-4).
    same = torch.randn(1000, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(slerp(same[:, None], same.clone()[:, None], torch.linspace(0, 1, 7)[None]), same[:, None].expand(-1, 7, -1))


def test_path_keeps_endpoints_exactly_and_z_fixed_when_only_the_code_moves():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 8, generator=g)
    a, b = Latent(z, torch.randn(2, 4, generator=g)), Latent(z.clone(), torch.randn(2, 4, generator=g))
    for mode in ("lerp", "slerp"):
        p = path(a, b, 6, mode)
        assert p.z.shape == (12, 8) and p.code.shape == (12, 4)
        assert torch.equal(p.z.view(2, 6, 8)[:, 0], a.z) and torch.equal(p.code.view(2, 6, 4)[:, -1], b.code)
        assert torch.allclose(p.z.view(2, 6, 8), z[:, None].expand(2, 6, 8), atol=1e-6)  # the same z all along


# --- arithmetic parser -----------------------------------------------------------------------------------------


def test_parser_names_with_spaces_dashes_quotes_indices_seeds_and_factors():
    terms = parse_expression("Sneaker - Sandal + Ankle boot", FASHION)
    assert [(c, o.kind, o.value) for c, o in terms] == [(1.0, "class", 7), (-1.0, "class", 5), (1.0, "class", 9)]
    terms = parse_expression("T-shirt/top-Shirt + 'ankle BOOT'", FASHION)  # the dash inside a name is not a minus
    assert [(c, o.value) for c, o in terms] == [(1.0, 0), (-1.0, 6), (1.0, 9)]
    terms = parse_expression("0.5*class:3 + 2 Bag - [12, 40,77] + shots/my-coat.png + p.npz#2", FASHION)
    assert [(c, o.kind, o.value) for c, o in terms] == [
        (0.5, "class", 3), (2.0, "class", 8), (-1.0, "seeds", (12, 40, 77)), (1.0, "file", "shots/my-coat.png"), (1.0, "file", "p.npz#2"),
    ]  # fmt: skip
    assert parse_endpoint("12", FASHION).kind == "seed" and parse_endpoint("Ankle boot", FASHION).value == 9


def test_seeds_out_of_range_are_named():
    for text in ("[1, 99999999999999999999]", "Bag + [2147483648]"):
        with pytest.raises(ConfigError, match="out of range; seeds go from 0 to 2147483647"):
            parse_expression(text, FASHION)
    with pytest.raises(ConfigError, match="seed -3"):
        parse_endpoint("-3", FASHION)


@pytest.mark.parametrize(
    "text, bad",
    [("Sneaker - Sandl + Ankle boot", "'Sandl'"), ("Sneaker Sandal", "'Sandal'"), ("Sneaker +", "'+'"), ("class:10", "'class:10'"),
     ("[1, x]", "'[1, x]'"), ("0.5 + Bag", "'0.5'"), ("'Bag", "'Bag")],
)  # fmt: skip
def test_parser_names_the_bad_token_and_the_valid_names(text, bad):
    with pytest.raises(ConfigError) as e:
        parse_expression(text, FASHION)
    msg = str(e.value)
    assert "\n" not in msg and bad in msg and "Ankle boot" in msg and "class:0..9" in msg, msg


def test_a_mistyped_class_name_is_matched_to_the_one_meant():
    from counterfeit.data.load import class_index_in

    with pytest.raises(ConfigError, match="unknown name 'Ankleboot' .*; did you mean 'Ankle boot'\\?; valid names"):
        parse_expression("Sneaker - Sandal + Ankleboot", FASHION)
    with pytest.raises(Exception, match="unknown class 'Bga' for --exclude-class; did you mean 'Bag'\\?"):
        class_index_in(FASHION, "fashion-mnist", "Bga")
    with pytest.raises(ConfigError) as e:
        parse_expression("Zebra", FASHION)
    assert "did you mean" not in str(e.value)  # nothing close: no guess
    # A dash cut 'T-shirt' to 'T', and the error named 'T', which is close to nothing.
    with pytest.raises(ConfigError, match="unknown name 'T-shirt' .*; did you mean 'T-shirt/top'\\?"):
        parse_expression("T-shirt - Trouser", FASHION)
    with pytest.raises(ConfigError, match="unknown name 'Sneakr' .*; did you mean 'Sneaker'"):
        parse_expression("Sneakr-Sandal", FASHION)  # the cut word is the one meant: the error names it alone
    with pytest.raises(ConfigError, match="expression ends with '-'"):
        parse_expression(" - ", FASHION)
    from counterfeit.export import pick_class  # sample --class, and --class of interpolate and arithmetic

    with pytest.raises(ConfigError, match="unknown class 'Sneakr'; did you mean 'Sneaker'\\?; choose a name or index"):
        pick_class(FASHION, "Sneakr")


def test_an_endpoint_is_not_an_expression():
    with pytest.raises(ConfigError, match="not an expression"):
        parse_endpoint("Sneaker - Sandal", FASHION)


@pytest.mark.parametrize(
    "text, says",
    [("Sneakr", "unknown name 'Sneakr' in endpoint \"Sneakr\"; did you mean 'Sneaker'?; valid names: T-shirt/top"),
     ("class:10", "no such class 'class:10' in endpoint"), ("[1, x]", "bad seed list (write it like [12,40,77]) '[1, x]' in endpoint"),
     ("'Bag", "unclosed quote at ''Bag' in endpoint"), ("shoe.txt", "unknown name 'shoe.txt' in endpoint"),
     ("-3", 'seed -3 in endpoint "-3" is out of range'), ("[1, 2147483648]", 'seed 2147483648 in endpoint "[1, 2147483648]"'),
     ("  ", "empty endpoint; give a seed such as 7"), ("Sneaker Sandal", "not an expression"), ("Bag +", "not an expression"),
     ("0.5", "not an expression"), ("1e999*Bag", "not an expression"), ("-", "not an expression: '-'"),
     ("T-shirt", "unknown name 'T-shirt' in endpoint \"T-shirt\"; did you mean 'T-shirt/top'?")],
)  # fmt: skip
def test_an_endpoints_errors_call_it_an_endpoint(text, says):
    """interpolate's --from and --to are endpoints: their errors said "in expression", and the grammar's advice
    (put a + before it, write 0.5*Sneaker) led only to the refusal of an expression."""
    with pytest.raises(ConfigError) as e:
        parse_endpoint(text, FASHION)
    msg = str(e.value)
    assert says in msg and "in expression" not in msg and "\n" not in msg, msg
    assert "seeds like 7" in msg or "not an expression" in msg or "out of range" in msg  # the choices name a plain seed


# --- projection ------------------------------------------------------------------------------------------------


def _tiny(model: str):
    torch.manual_seed(0)
    cfg = make_config(model=model, g_width=8, d_width=8, z_dim=8)
    G, D = build_models(cfg)
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def test_projection_recovers_an_image_made_from_a_known_z():
    G, _ = _tiny("dcgan")
    target = decode(G, torch.randn(3, 8, generator=torch.Generator().manual_seed(7)))  # (3, 1, 28, 28)
    p = project_gan(G, target, (-1.0, 1.0), steps=40, restarts=2, seed=1)
    assert p.latent.z.shape == (3, 8) and p.recon.shape == target.shape
    assert (p.error < p.error_start).all() and (p.error < 0.5 * p.error_start).all()
    assert torch.allclose(p.error, pixel_error(decode(G, p.latent), target, (-1.0, 1.0)), atol=1e-6)


def test_projection_of_a_conditional_model_moves_the_code_too():
    G, _ = _tiny("cdcgan")
    target = decode(G, Latent(torch.randn(2, 8), G.embed.weight[[1, 4]]))
    p = project_gan(G, target, (-1.0, 1.0), steps=40, restarts=2)
    assert p.latent.code.shape == (2, G.embed.weight.shape[1]) and (p.error < p.error_start).all()


def test_encoder_projection_with_refinement_never_gets_worse():
    G, E = _tiny("vae")
    target = decode(G, torch.randn(4, 8, generator=torch.Generator().manual_seed(3)))
    plain = project_encoder(G, E, target, (-1.0, 1.0), steps=0)
    refined = project_encoder(G, E, target, (-1.0, 1.0), steps=30)
    assert torch.equal(plain.error, plain.error_start) and (refined.error <= plain.error).all() and (refined.error < plain.error).any()


def test_a_conditional_runs_seed_endpoints_name_the_class_they_are_drawn_as():
    from types import SimpleNamespace

    from counterfeit.latent.explore import endpoint_labels
    from counterfeit.latent.operands import Resolver

    cond, uncond = SimpleNamespace(G=_tiny("cdcgan")[0]), SimpleNamespace(G=_tiny("dcgan")[0])
    seed, seeds, shoe = (parse_endpoint(t, FASHION) for t in ("3", "[1, 2]", "Sneaker"))
    # A seed gives z alone: without --class one row is drawn as class 0, and "seed 3" hid that it was a T-shirt/top.
    assert endpoint_labels(Resolver(cond), FASHION, [seed, shoe]) == (["seed 3, T-shirt/top", "Sneaker"], "")  # a class names itself
    assert endpoint_labels(Resolver(cond, 2, class_index=7), FASHION, [seeds, seed])[0] == ["seeds 1,2, Sneaker", "seed 3, Sneaker"]
    labels, note = endpoint_labels(Resolver(cond, 12), FASHION, [seed, shoe])  # rows of their own classes: one label cannot say
    assert labels == ["seed 3", "Sneaker"] and "its own class (T-shirt/top, Trouser, Pullover," in note and "Ankle boot, ...;" in note
    assert endpoint_labels(Resolver(uncond), FASHION, [seed, shoe]) == (["seed 3", "Sneaker"], "")  # no class to draw it as


def test_latent_files_round_trip_and_refuse_another_model(tmp_path):
    G, _ = _tiny("dcgan")
    save_latent(tmp_path / "l.npz", Latent(torch.arange(16.0).view(2, 8)), error=np.zeros(2))
    assert torch.equal(load_latent(tmp_path / "l.npz", G, 1).z, torch.arange(8.0, 16.0)[None])
    with pytest.raises(ConfigError, match="#0 to #1"):
        load_latent(tmp_path / "l.npz", G, 2)
    with pytest.raises(ConfigError, match="another model"):
        load_latent(tmp_path / "l.npz", _tiny("cdcgan")[0], 0)


def test_an_interpolation_strip_names_its_ends_as_the_equation_names_its_operands(tmp_path):
    from counterfeit.latent.figures import save_strip, walk_labels

    labels = walk_labels("seed 3", "Ankle boot", 4)
    assert labels == ["seed 3", "0.33", "0.67", "Ankle boot"]  # the endpoints, and how far along the walk each step is
    images = torch.zeros(2 * 4, 1, 28, 28, dtype=torch.uint8)  # 2 rows x 4 steps of black tiles
    save_strip(images, 2, tmp_path / "plain.png")  # no labels: the grid alone, as before
    save_strip(images, 2, tmp_path / "ends.png", labels=["seed 3", "", "", "Ankle boot"])
    with Image.open(tmp_path / "plain.png") as plain, Image.open(tmp_path / "ends.png") as named:
        p, s = np.array(plain), np.array(named)
    band = s.shape[0] - p.shape[0]
    assert s.shape[1] == p.shape[1] and band > 0 and (s[band:] == p).all()  # the same tiles, under a band of labels
    inked = [bool((s[:band, 6 + q * 90 : 6 + q * 90 + 84] > 200).any()) for q in range(4)]  # 28 px tiles + 2 px gaps, x3
    assert inked == [True, False, False, True], inked  # text above the two ends only


# --- CLI -------------------------------------------------------------------------------------------------------


def _train(tmp_path, *extra):
    assert main(["train", *TINY, *SHORT, "--eval-every-kimg", "0", "--out", str(tmp_path / "runs"), *extra]) == 0
    return sorted((tmp_path / "runs").iterdir())[-1]


def _gif_frames(path):
    with Image.open(path) as im:
        assert im.format == "GIF" and im.info.get("loop") == 0
        return im.n_frames


def test_cli_on_a_fashion_mnist_gan(fashion_dir, tmp_path, capsys):
    run = _train(tmp_path, "--data-dir", fashion_dir)
    out = tmp_path / "out"
    argv = ["interpolate", str(run), "--from", "3", "--to", "Ankle boot", "--steps", "5", "--rows", "2", "--out", str(out / "i.png")]
    assert main(argv) == 0
    with Image.open(out / "i.png") as im:
        strip = np.array(im)
    band = strip.shape[0] - 3 * (2 * 30 + 2)  # 2 rows x 5 steps of 28 px tiles, 2 px gaps, x3, under a band of labels
    assert strip.shape[1] == 3 * (5 * 30 + 2) and band > 0
    assert (strip[:band, 6 : 6 + 84] > 200).any() and (strip[:band, 6 + 4 * 90 : 6 + 4 * 90 + 84] > 200).any()  # both ends named
    assert _gif_frames(out / "i.gif") == 2 * 5 - 2  # forth and back
    assert main(["arithmetic", str(run), "Sneaker - Sandal + Ankle boot", "--rows", "2", "--out", str(out / "a.png")]) == 0
    text = capsys.readouterr().out
    assert "concepts: Sneaker (" in text and "evaluator's most likely class for each result row, with its probability:" in text
    thin = [line for line in text.splitlines() if "samples are confidently" in line]  # a barely trained G: few confident samples
    assert thin and all(any(f"'{c}'" in line for c in ("Sneaker", "Sandal", "Ankle boot")) for line in thin), thin
    Image.open(out / "a.png").verify()
    Image.fromarray(np.full((40, 30), 200, np.uint8)).save(tmp_path / "grey.png")  # resized and cropped to 28x28 on the way in
    argv = ["project", str(run), str(tmp_path / "grey.png"), "fashion-mnist:test:0", "--steps", "20", "--restarts", "2",
            "--out", str(out / "p.npz")]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out  # the unlabelled picture is named, and one image's latent is not "#0 .. #0"
    assert "p.png: each row of originals over its reconstructions" in text and "use the latents as" in text and ".. #1" in text
    assert "with 2 starts x 10 steps, then 10 more for the best" in text  # not '2 starts x 20 steps': the best start takes half
    saved = np.load(out / "p.npz")
    assert saved["z"].shape == (2, 8) and saved["recon"].shape == (2, 28, 28, 1) and (saved["error"] < saved["error_start"]).all()
    with Image.open(out / "p.png") as im:
        assert im.size == (3 * (2 * 30 + 2), 3 * (2 * 30 + 2))  # originals over reconstructions
    assert main(["interpolate", str(run), "--from", f"{out / 'p.npz'}#1", "--to", "class:0", "--steps", "3", "--mode", "lerp",
                 "--out", str(out / "j.png")]) == 0  # fmt: skip
    assert _gif_frames(out / "j.gif") == 4
    argv = [
        "interpolate",
        str(run),
        "--from",
        str(tmp_path / "grey.png"),
        "--to",
        "7",
        "--project-steps",
        "10",
        "--out",
        str(out / "k.png"),
    ]
    assert main(argv) == 0 and "projected grey.png: pixel error" in capsys.readouterr().out
    assert main(["arithmetic", str(run), f"{out / 'p.npz'}#0 - [1, 2] + 0.5*Bag", "--rows", "1", "--out", str(out / "b.png")]) == 0


def test_cli_errors_are_one_line(tiny_folder, tmp_path, capsys):
    run = _train(tmp_path, "--data", tiny_folder)
    capsys.readouterr()
    save_latent(tmp_path / "whole.npz", Latent(torch.zeros(1, 8)))
    cut = tmp_path / "cut.npz"  # a latent file cut short, as by a crash or a full disk
    cut.write_bytes((tmp_path / "whole.npz").read_bytes()[:40])
    broken_png = tmp_path / "broken.png"
    broken_png.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for argv, needle in [
        (["arithmetic", str(run), "Sneakr + Bag"], "unknown name 'Sneakr'"),
        (["arithmetic", str(run), "[1,2] - squares"], "unknown name 'squares'"),  # no evaluator classes for a folder run
        (["arithmetic", str(run), "[1,2] - squares"], "this run has no class names"),
        (["interpolate", str(run), "--from", "1", "--to", "Bag"], "unknown name 'Bag' in endpoint \"Bag\"; this run has no class names"),
        (["interpolate", str(run), "--from", "1", "--to", "nope.npz"], "nope.npz not found"),
        (["interpolate", str(run), "--from", "1", "--to", "2", "--steps", "1"], "--steps must be between 2 and 200"),
        (["project", str(run), "missing.png"], "image missing.png not found"),
        (["project", str(run), str(tmp_path), "--out", str(tmp_path / "p.npz")], f"image {tmp_path} is a folder; pass PNG/JPEG files"),
        (["interpolate", str(run), "--from", "1", "--to", str(cut), "--steps", "3"], "holds no latents"),
        (
            ["interpolate", str(run), "--from", "1", "--to", str(broken_png), "--project-steps", "-1"],
            "--project-steps must be from 0 to 10,000",
        ),
        (["arithmetic", str(run), f"[1] + {broken_png}"], "is not a readable image"),
        (["arithmetic", str(run), "1e999*[1]"], "a factor must be a number within +/-1,000,000, not '1e999'"),
        (["arithmetic", str(run), "1e300*[1]"], "within +/-1,000,000, not '1e300'"),  # overflowed float32: a black image, exit 0
        # A typo in a count is refused, not minutes of work (or a memory error that names no option)
        (["interpolate", str(run), "--from", "1", "--to", "2", "--rows", "100000000"], "--rows must be from 1 to 256"),
        (["project", str(run), "fashion-mnist:test:0", "--steps", "10000000000"], "--steps must be from 0 to 10,000"),
        (["project", str(run), "fashion-mnist:test:0", "--restarts", "100000000"], "--restarts from 1 to 64"),
        # An endpoint is one operand, so a path with a space or a dash stays whole; in an expression it needs quotes.
        (["interpolate", str(run), "--from", "1", "--to", str(tmp_path / "my shoe-1.png")], "my shoe-1.png not found"),
        (["arithmetic", str(run), f"[1] + {tmp_path / 'my shoe.png'}"], "goes in quotes"),
        (["arithmetic", str(run), "[1] + sneakr"], "'sneakr' in expression \"[1] + sneakr\"; this run has"),  # no path hint for a typo
        # Each command names its companion file after --out: a wrong suffix would write one file over the other.
        (["project", str(run), "fashion-mnist:test:0", "--out", str(tmp_path / "p.png")], "give a name ending in .npz"),
        (["interpolate", str(run), "--from", "1", "--to", "2", "--out", str(tmp_path / "i.gif")], "give a name ending in .png"),
        (["arithmetic", str(run), "[1] + [2]", "--out", str(tmp_path / "a.npz")], "give a name ending in .png"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("counterfeit: error:") and needle in err, err


def test_cli_on_a_conditional_run_and_a_vae(tiny_folder, tmp_path, capsys, monkeypatch):
    from counterfeit.latent import explore
    from counterfeit.latent.figures import save_strip

    run = _train(tmp_path, "--model", "cdcgan", "--data", tiny_folder)
    out = tmp_path / "out"
    argv = ["interpolate", str(run), "--from", "rings", "--to", "squares", "--steps", "4", "--rows", "3", "--out", str(out / "c.png")]
    assert main(argv) == 0
    assert _gif_frames(out / "c.gif") == 6
    drawn = []
    monkeypatch.setattr(explore, "save_strip", lambda *a, labels, **k: drawn.append(labels) or save_strip(*a, labels=labels, **k))
    assert main(["interpolate", str(run), "--from", "3", "--to", "squares", "--steps", "3", "--out", str(out / "s.png")]) == 0
    assert main(["interpolate", str(run), "--from", "3", "--to", "4", "--class", "squares", "--out", str(out / "t.png")]) == 0
    assert drawn[0] == ["seed 3, rings", "0.50", "squares"] and drawn[1][::9] == ["seed 3, squares", "seed 4, squares"]
    text = capsys.readouterr().out
    assert "seed 3, rings -> squares: 1 row(s) x 3 steps, slerp" in text and "seed 3, squares -> seed 4, squares: 1 row(s)" in text
    assert main(["arithmetic", str(run), "squares - rings + squares", "--out", str(out / "c2.png")]) == 0
    assert "label code" in capsys.readouterr().out
    # Without --out, different requests get different names (a second one replaced the first).
    for argv in (["arithmetic", str(run), "squares - rings"], ["arithmetic", str(run), "squares + rings"],
                 ["arithmetic", str(run), "2*squares - rings", "--rows", "2"], ["interpolate", str(run), "--from", "rings",
                 "--to", "squares", "--steps", "3"], ["interpolate", str(run), "--from", "rings", "--to", "squares", "--rows", "2"]):  # fmt: skip
        assert main(argv) == 0
    assert sorted(p.name for p in (run / "latent").glob("*.png")) == [
        "arithmetic-2x-squares-minus-rings-rows2.png", "arithmetic-squares-minus-rings.png", "arithmetic-squares-plus-rings.png",
        "interpolate-rings-to-squares-slerp-rows2.png", "interpolate-rings-to-squares-slerp-steps3.png"]  # fmt: skip
    assert main(["arithmetic", str(run), "[1] + [2]", "--class", "rings", "--project-steps", "5"]) == 0
    assert (run / "latent" / "arithmetic-seeds_1-plus-seeds_2-class-rings-proj5.png").is_file()  # --class, --project-steps
    vae = _train(tmp_path, "--model", "vae", "--data", tiny_folder)
    png = sorted(Path(tiny_folder).glob("squares/*.png"))[0]
    assert main(["project", str(vae), str(png), "--steps", "10"]) == 0
    assert "encoder + 10 refinement steps" in capsys.readouterr().out
    assert (vae / "latent" / f"project-{png.stem}.npz").is_file()
    assert math.isfinite(float(np.load(vae / "latent" / f"project-{png.stem}.npz")["error"][0]))
    assert main(["interpolate", str(vae), "--from", "1", "--to", "2", "--steps", "3", "--out", str(out / "v.png")]) == 0
    assert "never trained on z ~ N(0, I)" not in capsys.readouterr().out  # the VAE's prior is meant for sampling


def test_an_autoencoders_class_concepts_are_its_codes_of_real_images(fashion_dir, tmp_path, monkeypatch, capsys):
    """ae/dae decoders never trained on N(0, I), so a class is the mean encoder code of its real test images."""
    from counterfeit.data import load_dataset
    from counterfeit.latent.concepts import class_concepts
    from counterfeit.runs import load_run, load_slot
    from counterfeit.sample import from_uint8

    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", fashion_dir)
    ae = _train(tmp_path, "--model", "ae", "--data", "fashion-mnist")
    run = load_run(ae)
    concepts = class_concepts(run, n=600)
    test = load_dataset("fashion-mnist", "test")
    codes = load_slot(run, "D_ema")(from_uint8(test.x[:600], run.spec.pixel_range))[0]  # (600, z_dim)
    sneaker = test.labels[:600] == 7
    assert torch.allclose(concepts.vectors[7], codes[sneaker].mean(0), atol=1e-5) and concepts.members[7] == int(sneaker.sum())
    assert concepts.notes == {} and concepts.vectors.shape == (10, run.G.z_dim)
    capsys.readouterr()
    assert main(["arithmetic", str(ae), "Sneaker - Sandal + Bag", "--rows", "2", "--out", str(tmp_path / "a.png")]) == 0
    assert "never trained on z ~ N(0, I)" not in capsys.readouterr().out  # class concepts are codes it knows
    assert main(["arithmetic", str(ae), "Sneaker + [3]", "--rows", "2", "--out", str(tmp_path / "b.png")]) == 0
    assert "never trained on z ~ N(0, I), where seeds come from" in capsys.readouterr().out


def test_an_autoencoders_seed_walk_says_its_decoder_never_saw_the_prior(tiny_folder, tmp_path, capsys):
    """ae/dae decoders learn the encoder's codes, not N(0, I): a walk between seeds says so (and keeps going)."""
    ae = _train(tmp_path, "--model", "ae", "--data", tiny_folder)
    assert main(["interpolate", str(ae), "--from", "1", "--to", "2", "--steps", "3", "--out", str(tmp_path / "a.png")]) == 0
    assert "this ae run's decoder never trained on z ~ N(0, I)" in capsys.readouterr().out
    png = sorted(Path(tiny_folder).glob("squares/*.png"))[0]
    argv = [
        "interpolate",
        str(ae),
        "--from",
        str(png),
        "--to",
        str(png),
        "--steps",
        "2",
        "--project-steps",
        "1",
        "--out",
        str(tmp_path / "b.png"),
    ]
    assert main(argv) == 0
    assert "never trained" not in capsys.readouterr().out  # images are projected through its encoder: codes it knows


def test_a_latent_file_of_several_named_without_its_index_is_refused(tmp_path):
    """`--to proj.npz` took latent 0 of two without a word (and the strip was labelled 'proj.npz')."""
    G, _ = _tiny("dcgan")
    save_latent(tmp_path / "l.npz", Latent(torch.arange(16.0).view(2, 8)))
    with pytest.raises(ConfigError, match=r"holds 2 latents; say which with l.npz#0 to #1"):
        load_latent(tmp_path / "l.npz", G, None)
    save_latent(tmp_path / "one.npz", Latent(torch.arange(8.0).view(1, 8)))
    assert torch.equal(load_latent(tmp_path / "one.npz", G, None).z, torch.arange(8.0)[None])  # the only one needs no #0


def test_a_label_past_ascii_is_drawn_in_a_font_that_has_its_letters():
    """Pillow's own font drew 'café.npz' as 'caf' and a box; a system font with the letters now draws it."""
    from PIL import ImageDraw

    from counterfeit.latent import figures

    if figures._font_for("é", 14) is None:
        pytest.skip("no font with 'é' on this system (DejaVu Sans, Arial, Noto CJK, ...)")

    def drawn(text: str) -> bytes:
        img = Image.new("L", (200, 30))
        figures._label(ImageDraw.Draw(img), 100, 30, text, figures._font(14), 200, 255)
        return img.tobytes()

    assert drawn("café.npz") != drawn("caf\U0010ffff.npz")  # the é is a letter, not the missing-glyph box
    plain = Image.new("L", (200, 30))
    ImageDraw.Draw(plain).text((100, 15), "cafe.npz", fill=255, font=figures._font(14), anchor="mm")
    assert drawn("cafe.npz") == plain.tobytes()  # ASCII keeps Pillow's font: the usual pictures look alike everywhere
