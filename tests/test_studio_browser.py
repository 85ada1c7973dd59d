"""The studio in headless Chromium: generate and see an image, a refused count, the run page, the playground.

Needs Debian's `chromium` and pip's `playwright` (driving that browser; no browser download). Skipped without them.
"""

import shutil
import threading
import time

import pytest
from conftest import STUDIO_RUNS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
DCGAN, CDCGAN, TOY = STUDIO_RUNS

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the browser tests")
uvicorn = pytest.importorskip("uvicorn")
if not shutil.which(CHROMIUM):
    pytest.skip("no chromium browser (apt-get install chromium) for the browser tests", allow_module_level=True)


@pytest.fixture(scope="module")
def url(studio_runs):
    """The studio served by uvicorn on a free loopback port, in a thread."""
    from counterfeit.studio.app import bind, create_app

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(studio_runs), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, url):
    """A fresh page that records page errors and every request that leaves the studio."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.errors, page.outside = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else page.outside.append(r.url))
    page.set_default_timeout(30_000)
    yield page
    assert page.errors == [] and page.outside == []  # no script error, nothing fetched from elsewhere (works offline)
    page.close()


def _open_with_run(page, url, tab, run_form):
    """Open a tab and pick the tiny DCGAN in its model menu once the menu is filled."""
    page.goto(url + "#" + tab)
    page.wait_for_selector(f"{run_form} select[name=run] option[value='{DCGAN}']", state="attached")
    page.select_option(f"{run_form} select[name=run]", DCGAN)


def test_generate_shows_an_image_and_a_clear_error(page, url):
    _open_with_run(page, url, "generate", "#gen-form")
    page.fill("#gen-form [name=n]", "16")
    page.click("#gen-form button[type=submit]")
    page.wait_for_function("document.querySelector('#gen-img').naturalWidth > 0")
    assert page.is_visible("#gen-img") and page.is_hidden("#gen-error")
    assert "format=zip" in page.get_attribute("#gen-zip", "href")
    page.fill("#gen-form [name=n]", "100000")
    page.click("#gen-form button[type=submit]")
    page.wait_for_selector("#gen-error", state="visible")
    assert "'n' must be from 1 to 256" in page.inner_text("#gen-error")


def test_the_count_follows_the_run_kind_as_sample_does(page, url):
    _open_with_run(page, url, "generate", "#gen-form")
    count = "document.querySelector('#gen-form [name=n]')"
    page.wait_for_function("document.querySelector('#gen-info').textContent.startsWith('dcgan')")
    page.wait_for_selector(f"#gen-form select[name=run] option[value='{TOY}']", state="attached")
    page.select_option("#gen-form select[name=run]", TOY)
    page.wait_for_function(f"{count}.value === '2500' && {count}.max === '10000'")  # sample's points: 64 hardly show a ring
    page.select_option("#gen-form select[name=run]", DCGAN)
    page.wait_for_function(f"{count}.value === '64' && {count}.max === '256'")
    page.fill("#gen-form [name=n]", "16")
    page.select_option("#gen-form select[name=run]", TOY)
    page.wait_for_function(f"{count}.max === '10000'")
    assert page.input_value("#gen-form [name=n]") == "16"  # a count the user chose stays


def test_run_page_charts_and_grid_slider(page, url):
    page.goto(url + "#runs")
    page.click(f"a[href='#run/{DCGAN}']")
    page.wait_for_selector("#chart-loss svg path")
    assert page.locator("#chart-d svg").count() == 1
    page.wait_for_function("document.querySelector('#grid-img').naturalWidth > 0")
    last = page.inner_text("#grid-label")
    page.fill("#grid-slider", "0")  # the first grid, from the start of training
    assert page.inner_text("#grid-label") != last and "(1 of 2)" in page.inner_text("#grid-label")


def test_playground_steps(page, url):
    page.goto(url + "#playground")
    page.wait_for_function("document.querySelector('#pg-modes').textContent.includes('/ 8')")
    page.fill("#pg-form [name=steps]", "3")
    page.click("#pg-step")
    page.wait_for_function("document.querySelector('#pg-stepno').textContent === '3'")
    page.click("#pg-train")
    page.wait_for_function("+document.querySelector('#pg-stepno').textContent >= 9")
    page.click("#pg-train")  # pause
    page.wait_for_function("document.querySelector('#pg-status').textContent === 'paused'")
    assert page.inner_text("#pg-train") == "Train"
    page.click("#pg-reset")
    page.wait_for_function("document.querySelector('#pg-stepno').textContent === '0'")


def test_latent_interpolation_slider(page, url):
    pytest.importorskip("counterfeit.latent", reason="the latent module (lerp/slerp) is not in this build")
    _open_with_run(page, url, "latent", "#lat-run-form")
    page.fill("#lat-interp-form [name=steps]", "8")
    page.click("#lat-interp-form button[type=submit]")
    page.wait_for_function("document.querySelector('#lat-frame').naturalWidth > 0")
    first = page.get_attribute("#lat-frame", "src")
    page.fill("#lat-slider", "7")  # to the other end of the walk
    assert page.get_attribute("#lat-frame", "src") != first and "t = 1.00" in page.inner_text("#lat-t")
    page.wait_for_selector("#lat-sliders input[data-i='0']")
    before = page.get_attribute("#lat-dims-img", "src")
    page.fill("#lat-sliders input[data-i='0']", "3.5")
    page.wait_for_function(f"document.querySelector('#lat-dims-img').src !== {before!r}")


def test_a_number_the_browser_cannot_read_is_refused_not_sent_as_the_default(page, url):
    """'1e' in a number field reads as empty: the form says so instead of starting a default 600-kimg run."""
    page.goto(url + "#runs")
    page.wait_for_function("document.querySelector('#train-form [name=kimg]').placeholder.includes('600')")  # dcgan's length
    assert "hinge" in page.inner_text("#train-form [name=loss] option")  # the model's own default loss, not a fixed one
    page.select_option("#train-form [name=data]", "ring8")
    page.wait_for_function("document.querySelector('#train-form [name=kimg]').placeholder.includes('512')")  # mlp's
    page.type("#train-form [name=kimg]", "1e")
    sent = []
    page.on("request", lambda r: sent.append(r.url) if "/api/train" in r.url else None)
    page.click("#train-form button[type=submit]")
    page.wait_for_selector("#train-error", state="visible")
    assert "kimg: not a number" in page.inner_text("#train-error") and sent == []


def test_a_bad_run_address_clears_the_previous_run(page, url):
    page.goto(url + f"#run/{DCGAN}")
    page.wait_for_function("document.querySelector('#run-summary').textContent.length > 0")
    page.evaluate("location.hash = '#run/nope'")
    page.wait_for_selector("#run-error", state="visible")
    assert "nope" in page.inner_text("#run-error") and page.inner_text("#run-summary") == ""
    assert page.get_attribute("#grid-img", "src") is None and page.inner_text("#run-config") == ""
    page.evaluate("location.hash = '#run/..'")  # no run name at all: the list
    page.wait_for_selector("#tab-runs", state="visible")


def test_latent_errors_show_by_their_section_and_clear_its_old_result(page, url):
    _open_with_run(page, url, "latent", "#lat-run-form")
    page.fill("#lat-arith-form [name=expr]", "[1, 2] - [3]")
    page.click("#lat-arith-form button[type=submit]")
    page.wait_for_selector("#lat-arith .term img")
    page.fill("#lat-arith-form [name=expr]", "Foo + 1")
    page.click("#lat-arith-form button[type=submit]")
    page.wait_for_selector("#lat-arith-error", state="visible")
    text = page.inner_text("#lat-arith-error")
    assert "Foo" in text and ".png" not in text and ".npz" not in text  # the studio takes no file operands
    assert page.locator("#lat-arith .term").count() == 0 and page.is_hidden("#latent-error")
