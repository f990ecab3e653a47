"""``learned-envs play --serve``: a local web page where a person plays a learned env with the keyboard.

The real game runs beside the dream, started from the same frames and stepped by the same keys; the page
shows both frames, the dream's reward and termination probability, and each side's running score. The
HTTP side is the standard library's ``http.server`` (its request parsing, one thread per request); steps
are taken one at a time under a lock, so a second browser tab sees the same game.

Routes: ``GET /`` the page, ``GET /state`` the current view as JSON, ``POST /step`` with
``{"keys": ["UP", "FIRE"]}`` (the words of ALE action names the held keys stand for) steps both games,
``POST /reset`` (optionally ``{"seed": 3}``) starts a new real game and a new dream from it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataset_tools.atari import game_spec
from learned_envs.play import dream_frame, start_dream
from learned_envs.twin import make_real_twin

log = logging.getLogger(__name__)

KEYS = {"ArrowUp": "UP", "ArrowDown": "DOWN", "ArrowLeft": "LEFT", "ArrowRight": "RIGHT", " ": "FIRE"}
"""Browser key names -> the word of ALE's action names each one presses."""


def action_for(words: list[str], meanings: list[str], key_tokens: dict[str, str] | None = None) -> int:
    """The action whose ALE name is made of the held ``words`` (``["UP", "FIRE"]`` -> ``UPFIRE``).

    ``key_tokens`` renames words for the game first (Pong: ``UP`` -> ``RIGHT``, which moves its paddle up;
    ``""`` drops a word). Where no action has all the words, the last-pressed words are dropped until one has
    them (``NOOP`` when none are left)."""
    renamed = [(key_tokens or {}).get(w, w) for w in words]
    held = [w for w in dict.fromkeys(renamed) if w]
    by_words = {frozenset(_words(m)): i for i, m in enumerate(meanings)}
    while held:
        hit = by_words.get(frozenset(held))
        if hit is not None:
            return hit
        held.pop()
    return by_words.get(frozenset(), 0)


def _words(meaning: str) -> list[str]:
    """``"UPRIGHTFIRE"`` -> ``["UP", "RIGHT", "FIRE"]``; ``"NOOP"`` -> ``[]``."""
    words, rest = [], meaning
    while rest:
        for w in ("UP", "DOWN", "LEFT", "RIGHT", "FIRE"):
            if rest.startswith(w):
                words.append(w)
                rest = rest[len(w) :]
                break
        else:
            return [] if meaning == "NOOP" else [meaning]
    return words


def png_data_url(frame: np.ndarray) -> str:
    """(H, W, C) uint8 RGB (or grey) -> ``data:image/png;base64,...``."""
    import cv2

    bgr = frame[..., 0] if frame.shape[-1] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError("could not encode a frame as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


class PlaySession:
    """One person's game: the real game (the checkpoint's twin) and the dream, stepped together."""

    def __init__(self, checkpoint: str | Path, seed: int = 0, device: str = "cpu") -> None:
        self.name = str(checkpoint)
        self.twin = make_real_twin(checkpoint, obs_type="frames", device=device)
        self.model = self.twin.model
        self.device = next(self.model.parameters()).device
        self.meanings: list[str] = list(self.twin.unwrapped.get_action_meanings())
        self.key_tokens = dict(game_spec(self.twin.config.game).key_tokens)
        self.lock = threading.Lock()
        self.seed = seed - 1
        self.reset()

    @torch.no_grad()
    def reset(self, seed: int | None = None) -> dict[str, Any]:
        """A new real game (``seed``, default the next one) and the dream started from its first frames (NOOPs
        between them)."""
        with self.lock:
            self.seed = self.seed + 1 if seed is None else int(seed)
            self.state, _, self.generator = start_dream(self.twin, lambda _: 0, self.seed)
            self.real = self.twin.preprocess(self.twin.last_raw_frame)
            self.dream = dream_frame(self.model, self.state)
            self.steps, self.action = 0, 0
            self.scores = [0.0, 0.0]
            self.rewards = [0.0, 0.0]
            self.termination = 0.0
            self.real_over = self.dream_over = False
            return self._view()

    @torch.no_grad()
    def step(self, words: list[str]) -> dict[str, Any]:
        """Both games one step with the action the held ``words`` make; after either game ended, nothing moves."""
        unknown = sorted(set(words) - set(KEYS.values()))
        if unknown:
            raise ValueError(f"unknown key word(s) {unknown}; expected some of {sorted(set(KEYS.values()))}")
        with self.lock:
            if self.real_over or self.dream_over:
                return self._view()
            a = action_for(words, self.meanings, self.key_tokens)
            _, real_reward, term, trunc, _ = self.twin.step(a)
            self.state, reward, termination = self.model.step(
                self.state, torch.tensor([a], device=self.device), generator=self.generator
            )
            self.real, self.dream = self.twin.preprocess(self.twin.last_raw_frame), dream_frame(self.model, self.state)
            self.rewards = [float(real_reward), float(reward[0])]
            self.scores = [self.scores[0] + self.rewards[0], self.scores[1] + self.rewards[1]]
            self.termination = float(termination[0])
            self.real_over, self.dream_over = bool(term or trunc), self.termination > 0.5
            self.steps, self.action = self.steps + 1, a
            return self._view()

    def view(self) -> dict[str, Any]:
        with self.lock:
            return self._view()

    def _view(self) -> dict[str, Any]:
        return {
            "env": self.name,
            "seed": self.seed,
            "step": self.steps,
            "action": self.meanings[self.action],
            "real": {
                "frame": png_data_url(self.real),
                "reward": self.rewards[0],
                "score": self.scores[0],
                "over": self.real_over,
            },
            "dream": {
                "frame": png_data_url(self.dream),
                "reward": self.rewards[1],
                "score": self.scores[1],
                "termination": self.termination,
                "over": self.dream_over,
            },
        }


def _page(session: PlaySession, fps: int) -> bytes:
    """The page (``serve.html`` beside this module) with the env's name, its keys and the step rate."""
    html = (Path(__file__).parent / "serve.html").read_text(encoding="utf-8")
    keys = {k: v for k, v in KEYS.items() if session.key_tokens.get(v, v)}
    return (
        html.replace("{{TITLE}}", escape(session.name))
        .replace("{{KEYS}}", json.dumps(keys))
        .replace("{{FPS}}", str(int(fps)))
        .encode("utf-8")
    )


def make_server(session: PlaySession, host: str = "127.0.0.1", port: int = 8000, fps: int = 15) -> ThreadingHTTPServer:
    """An HTTP server for ``session`` (port 0: any free port; ``server.server_address`` says which). Call its
    ``serve_forever()``; ``shutdown()`` from another thread stops it."""
    page = _page(session, fps)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            log.debug("%s - %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: dict[str, Any]) -> None:
            self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/state":
                self._json(HTTPStatus.OK, session.view())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                if self.path == "/step":
                    words = body.get("keys", [])
                    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                        raise ValueError('"keys" must be a list of strings')
                    self._json(HTTPStatus.OK, session.step(words))
                elif self.path == "/reset":
                    seed = body.get("seed")
                    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
                        raise ValueError('"seed" must be a whole number >= 0')
                    self._json(HTTPStatus.OK, session.reset(seed))
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no action {self.path}"})
            except ValueError as err:  # json.JSONDecodeError is a ValueError
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(err)})

    return ThreadingHTTPServer((host, port), Handler)


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8000, fps: int = 15, seed: int = 0) -> None:
    """Serve ``checkpoint`` (a learned-env id or checkpoint directory) until Ctrl+C."""
    if not 1 <= fps <= 60:
        raise ValueError(f"fps must be 1 to 60 steps per second, got {fps}")
    session = PlaySession(checkpoint, seed=seed)
    server = make_server(session, host, port, fps)
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"playing {session.name} at {url} (arrow keys and space; Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
