"""The paint page end to end in a real headless browser (Debian's chromium + chromedriver via
Selenium): load, pick 'door', paint a stroke with mouse events on a wall's ground line, and
check the image the server sent back.

Skipped only where chromedriver is missing (``.ci/run`` installs it). ``GDJAX_SCREENSHOT=path.png``
saves the page after the stroke (and ``path-seg.png`` with the segmentation overlay).
"""

import base64
import io
import os
import shutil
import socket
import tempfile
import threading
import time

import numpy as np
import paint_world as W
import pytest
from PIL import Image

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMEDRIVER):
    pytest.skip(
        "chromedriver not found (apt-get install chromium chromium-driver, as .ci/run does)",
        allow_module_level=True,
    )
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FLAGS = ("--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
         "--disable-background-networking --disable-component-update --disable-sync "
         "--window-size=1280,820 --hide-scrollbars").split()  # fmt: skip
STAGE = 512  # the page shows the image at 512 x 512 CSS px


@pytest.fixture(scope="module")
def served():
    world = W.world()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield world, f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="gdjax-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pixels(url: str) -> np.ndarray:
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float32)


def _wall(world, seeds):
    """The first wall ground-line spot ``(seed, row, col)`` (layer cells) among ``seeds``: a
    cell of building over grass/road under a cell of wall, neither holding a door."""
    labels = world.labels
    cells = lambda c: (labels == c).reshape(len(labels), 8, 8, 8, 8).mean(axis=(2, 4))  # noqa: E731
    building, door = cells(W.BUILDING), cells(W.DOOR)
    ground = sum(cells(c) for c in W.GROUND)
    for s in seeds:
        for i in range(1, 8):
            for j in range(8):
                if (
                    building[s, i, j] >= 0.4
                    and ground[s, i, j] >= 0.2
                    and building[s, i - 1, j] >= 0.75
                    and door[s, i - 1 : i + 1, j].max() < 0.02
                ):
                    return s, i, j  # fmt: skip
    raise AssertionError("no wall among the seeds shown")


def test_paint_a_door_in_the_browser(served, browser):
    world, url = served
    wait = WebDriverWait(browser, 60)
    browser.get(url)
    image = browser.find_element(By.ID, "image")
    version = lambda: int(image.get_attribute("data-version") or 0)  # noqa: E731
    wait.until(lambda d: version() >= 1 and d.find_elements(By.ID, "seed-11"))
    seed, row, col = _wall(world, range(12))
    if seed != 0:
        v = version()
        browser.find_element(By.ID, f"seed-{seed}").click()
        wait.until(lambda d: version() > v)
    before = _pixels(image.get_attribute("src"))
    assert browser.find_element(By.ID, "concept-door").get_attribute("title") == "ranking door-iou"
    browser.find_element(By.ID, "concept-door").click()
    browser.find_element(By.ID, "strength-10").click()

    # A vertical stroke through the centres of cells (row - 1, col) and (row, col); the 40 px
    # brush stays inside that column of 64 px cells.
    cell = STAGE // 8
    canvas = browser.find_element(By.ID, "paint")
    x = col * cell + cell // 2 - STAGE // 2  # offsets from the canvas centre
    y0, y1 = (row - 1) * cell + cell // 2 - STAGE // 2, row * cell + cell // 2 - STAGE // 2
    v = version()
    chain = ActionChains(browser).move_to_element_with_offset(canvas, x, y0).click_and_hold()
    for _ in range(4):
        chain.move_by_offset(0, (y1 - y0) // 4)
    chain.release().perform()
    wait.until(lambda d: version() > v)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#strokes li.stroke")) == 1
    after = _pixels(image.get_attribute("src"))
    status = browser.find_element(By.ID, "status").text
    assert "1 stroke" in status and "server" in status, status

    # Changed inside the stroke, not 16 px (two cells) or more away from it.
    r0, r1, c0, c1 = (row - 1) * 8, (row + 1) * 8, col * 8, (col + 1) * 8
    yy, xx = np.mgrid[:64, :64]
    dist = np.maximum(np.maximum(r0 - yy, yy - (r1 - 1)), np.maximum(c0 - xx, xx - (c1 - 1)))
    diff = np.abs(after - before).mean(-1) / 255
    inside, far = diff[dist < 0].mean(), diff[dist >= 16].max()
    assert inside > 0.03 and far == 0, (inside, far)
    # And it is exactly the image of the request the page should have made: the top 10 door
    # units at their 0.99 levels over those two cells.
    vals = world.eng.levels.at([0.99])[:, 0]
    a = np.zeros((8, 8, 128), np.float32)
    units = W.order(world.record, "door-iou")[:10]
    a[row - 1 : row + 1, col, units] = 1
    v_plane = np.zeros_like(a)
    v_plane[..., units] = vals[units]
    want, _ = world.eng.generate([seed], None, a, v_plane)
    np.testing.assert_array_equal(after, want[0])

    shot = os.environ.get("GDJAX_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)
    # The segmentation overlay, then undo brings the original image back.
    v = version()
    browser.find_element(By.ID, "showseg").click()
    wait.until(lambda d: version() > v)
    seg = browser.find_element(By.ID, "seg")
    assert seg.is_displayed() and seg.get_attribute("src").startswith("data:image/png")
    assert browser.find_element(By.ID, "legend").is_displayed()
    if shot:
        browser.save_screenshot(os.path.splitext(shot)[0] + "-seg.png")
    v = version()
    browser.find_element(By.ID, "undo").click()
    wait.until(lambda d: version() > v)
    np.testing.assert_array_equal(_pixels(image.get_attribute("src")), before)
    assert not browser.find_elements(By.CSS_SELECTOR, "#strokes li.stroke")
