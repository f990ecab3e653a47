"""``learned-envs play --serve``: keys -> actions, the HTTP routes, and a real headless browser pressing a key."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from learned_envs.serve import PlaySession, action_for, make_server

PONG = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
PONG_KEYS = {"UP": "RIGHT", "DOWN": "LEFT", "LEFT": "", "RIGHT": ""}


def test_keys_make_the_game_s_actions() -> None:
    assert [PONG[action_for(w, PONG, PONG_KEYS)] for w in ([], ["UP"], ["DOWN"], ["FIRE"])] == [
        "NOOP",
        "RIGHT",
        "LEFT",
        "FIRE",
    ]
    assert PONG[action_for(["UP", "FIRE"], PONG, PONG_KEYS)] == "RIGHTFIRE"
    assert PONG[action_for(["LEFT"], PONG, PONG_KEYS)] == "NOOP"  # a key Pong does not use
    full = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT"]
    full += ["UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE"]
    full += ["DOWNLEFTFIRE"]
    assert full[action_for(["UP", "LEFT", "FIRE"], full)] == "UPLEFTFIRE"
    assert full[action_for(["LEFT", "UP"], full)] == "UPLEFT"
    # no action has UP and DOWN together: the last-pressed word is dropped
    assert full[action_for(["UP", "DOWN"], full)] == "UP"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, PlaySession]]:
    session = PlaySession("LearnedPong-v2", seed=3)
    server = make_server(session, port=0, fps=15)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", session
    server.shutdown()
    server.server_close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _post(url: str, body: object) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_routes_step_both_games_with_the_keys(served: tuple[str, PlaySession]) -> None:
    url, _ = served
    page = _get(url + "/").decode()
    assert "LearnedPong-v2" in page and '"ArrowUp": "UP"' in page
    assert '"ArrowLeft"' not in page  # Pong's paddle does not move sideways
    first = _post(url + "/reset", {"seed": 3})
    assert first["step"] == 0 and first["dream"]["frame"].startswith("data:image/png;base64,")
    states = [first]
    for _ in range(12):
        states.append(_post(url + "/step", {"keys": ["UP"]}))
    last = states[-1]
    assert last["step"] == 12 and last["action"] == "RIGHT"  # Pong's RIGHT moves the paddle up
    assert last["dream"]["frame"] != first["dream"]["frame"]
    assert last["real"]["frame"] != first["real"]["frame"]
    assert 0.0 <= last["dream"]["termination"] <= 1.0
    assert last["dream"]["score"] == sum(s["dream"]["reward"] for s in states[1:])
    assert json.loads(_get(url + "/state"))["step"] == 12
    # the same keys move the paddle the other way from a new game: the dream follows the keys
    up_frame = last["dream"]["frame"]
    again = _post(url + "/reset", {"seed": 3})
    assert again["seed"] == 3 and again["real"]["frame"] == first["real"]["frame"]
    for _ in range(12):
        down = _post(url + "/step", {"keys": ["DOWN"]})
    assert down["action"] == "LEFT" and down["dream"]["frame"] != up_frame


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/step", {"keys": ["JUMP"]}, "unknown key word"),
        ("/step", {"keys": "UP"}, "must be a list"),
        ("/step", [1], "JSON object"),
        ("/reset", {"seed": "x"}, "whole number"),
        ("/nothing", {}, "no action"),
    ],
)
def test_bad_requests_get_a_one_line_error(
    served: tuple[str, PlaySession], path: str, body: object, message: str
) -> None:
    url, _ = served
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(url + path, body)
    assert err.value.code in (400, 404)
    assert message in json.loads(err.value.read())["error"]


def test_the_command_says_in_one_line_when_it_cannot_serve(capsys: pytest.CaptureFixture) -> None:
    import socket

    from learned_envs.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["play", "--checkpoint", "LearnedPong-v2", "--serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"learned-envs: error: cannot serve on 127.0.0.1:{port}") and "\n" not in err
    assert main(["play", "--checkpoint", "LearnedPong-v2", "--serve", "--fps", "0"]) == 2
    assert "fps must be" in capsys.readouterr().err


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "no headless browser here: install Chromium and its driver (Debian: apt-get install chromium "
            "chromium-driver) to run the browser test of play --serve; .ci/run does"
        )
    return chromium, driver


def test_a_key_press_in_a_real_browser_changes_the_frame(served: tuple[str, PlaySession], tmp_path: Path) -> None:
    chromium, driver_path = _browser_paths()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    url, _ = served
    _post(url + "/reset", {})
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        browser.get(url + "/")

        def text(element_id: str) -> str:
            return browser.find_element("id", element_id).text

        def src(element_id: str) -> str:
            return browser.find_element("id", element_id).get_attribute("src") or ""

        deadline = time.monotonic() + 30
        while not src("dream").startswith("data:image/png") and time.monotonic() < deadline:
            time.sleep(0.1)
        before = src("dream")
        assert before.startswith("data:image/png"), "the page never showed the dream"
        time.sleep(0.5)  # the game waits for a key: nothing moves on its own
        assert text("step") == "0" and src("dream") == before
        ActionChains(browser).key_down(Keys.ARROW_UP).perform()
        deadline = time.monotonic() + 30
        while int(text("step") or 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert int(text("step")) >= 5, f"the key press did not step the game: {text('message')}"
        assert text("action") == "RIGHT"  # the arrow held down, as Pong's action that moves the paddle up
        ActionChains(browser).key_up(Keys.ARROW_UP).perform()
        assert src("dream") != before
        assert text("dream-termination") != ""
    finally:
        browser.quit()
