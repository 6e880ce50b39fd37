"""Probing, decoding and audio demuxing in a child process with a timeout: a hang or crash
costs one file.

Native decoders (FFmpeg through PyAV and decord, Pillow) can hang on a malformed file or crash
the process they run in. :class:`DecoderProcess` keeps them in a child Python process that
serves probe, audio and decode requests over a pipe, one media at a time, streaming decoded
frames back window by window (audio comes back whole: 16 kHz mono is 3.8 MB per minute).
If the child sends nothing for ``timeout_s`` seconds it is killed; if it dies,
its exit is reported; either way the media becomes a :class:`~raypipe.errors.MediaError` and the
next request starts a fresh child. The parent (an extraction actor, or a plain loop) survives.

The child is started once and reused, so the cost of starting Python is paid once per worker,
not per file. While the parent works on one window the child is already decoding the next, so
decoding overlaps detection and embedding.

Test-only fault hook: when the environment variable ``RAYPIPE_DECODER_FAULT`` holds
``hang:<text>`` or ``crash:<text>``, the child sleeps forever or kills itself with SIGSEGV on
files whose path contains ``<text>``, before answering; ``hang@<n>:<text>`` and
``crash@<n>:<text>`` do it in the middle of a decode, after sending ``n`` windows. Several
rules are separated by commas. Nothing sets it outside tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from raypipe.errors import MediaError
from raypipe.media.audio import NoAudioError
from raypipe.media.probe import MediaInfo
from raypipe.media.video import SampledFrames

log = logging.getLogger(__name__)

FAULT_ENV = "RAYPIPE_DECODER_FAULT"


class DecoderProcess:
    """A reusable child process that probes and decodes media, with a per-message timeout.

    Args:
        timeout_s: longest wait, seconds, for the child's next answer (a probe, or the next
            window of frames) before it counts as hung and is killed.
    """

    def __init__(self, timeout_s: float = 120.0) -> None:
        self.timeout_s = float(timeout_s)
        self._proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        #: Children started so far (1 + restarts after hangs and crashes).
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        # The child imports raypipe the way this process found it (working dirs of Ray jobs).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raypipe.media.decoder_process",
                str(to_child_r),
                str(from_child_w),
                str(os.getpid()),
            ],
            pass_fds=(to_child_r, from_child_w),
            env=env,
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self.starts += 1

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._proc = self._send = self._recv = None

    def close(self) -> None:
        """Stop the child (it is restarted on the next request)."""
        self._kill()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown nothing more can be done
            self._kill()

    @property
    def pid(self) -> int | None:
        """Process id of the running child, if any."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # -- protocol ----------------------------------------------------------------------------
    def _request(self, message: tuple) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._start()
        assert self._send is not None
        self._send.send(message)

    def _answer(self, path: str) -> tuple[str, Any]:
        assert self._recv is not None and self._proc is not None
        try:
            ready = self._recv.poll(self.timeout_s)
        except (EOFError, OSError):
            ready = True
        if not ready:
            self._kill()
            raise MediaError(
                f"{path}: the decoder sent nothing for {self.timeout_s:g} s and was stopped (it "
                "hung on this file); re-encode it, or raise video.decode_timeout_s if it is "
                "just slow."
            )
        try:
            return self._recv.recv()
        except (EOFError, OSError):
            code = self._proc.wait(timeout=10)
            self._kill()
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise MediaError(
                f"{path}: the decoder process crashed on this file ({how}); re-encode it."
            ) from None

    @staticmethod
    def _raise(path: str, payload: tuple[str, str]) -> None:
        kind, message = payload
        if kind == "no_audio":
            raise NoAudioError(message)
        if kind == "media":
            raise MediaError(message)
        raise MediaError(f"{path}: decoding raised {message}; re-encode the file.")

    def probe(self, path: str | Path) -> MediaInfo:
        """Probe ``path`` in the child (see :func:`raypipe.media.probe.probe`).

        Raises:
            MediaError: the file is unreadable, or the child hung or crashed on it.
        """
        path = str(path)
        self._request(("probe", path))
        kind, payload = self._answer(path)
        if kind == "error":
            self._raise(path, payload)
        return payload

    def audio(self, path: str | Path, sample_rate: int) -> np.ndarray:
        """Demux and resample the audio of ``path`` in the child (see
        :func:`raypipe.media.audio.load_audio`): mono float32 at ``sample_rate`` Hz.

        Raises:
            NoAudioError: the media has no audio stream.
            MediaError: the audio cannot be decoded, or the child hung or crashed on it.
        """
        path = str(path)
        self._request(("audio", path, sample_rate))
        kind, payload = self._answer(path)
        if kind == "error":
            self._raise(path, payload)
        return payload

    def windows(
        self,
        info: MediaInfo,
        fps: float,
        max_side: int,
        max_frames: int | None,
        window_frames: int,
    ) -> Iterator[SampledFrames]:
        """Decode ``info.path`` in the child, yielding windows as they arrive.

        Stopping the iteration early stops the child (a fresh one serves the next request).

        Raises:
            MediaError: the file cannot be decoded, or the child hung or crashed on it.
        """
        self._request(("decode", info, fps, max_side, max_frames, window_frames))
        finished = False
        try:
            while True:
                kind, payload = self._answer(info.path)
                if kind == "window":
                    yield payload
                elif kind == "end":
                    finished = True
                    return
                else:
                    finished = True  # the child is back to waiting for requests
                    self._raise(info.path, payload)
        finally:
            if not finished:
                self._kill()


_SHARED: dict[float, DecoderProcess] = {}


def shared_decoder(timeout_s: float = 120.0) -> DecoderProcess:
    """The decoder child of this process for ``timeout_s`` (one per worker, started lazily)."""
    if timeout_s not in _SHARED:
        _SHARED[timeout_s] = DecoderProcess(timeout_s)
    return _SHARED[timeout_s]


# -- the child side ----------------------------------------------------------------------------


def _fault(path: str, windows_sent: int = 0) -> None:
    """Misbehave as the test-only rules of ``RAYPIPE_DECODER_FAULT`` say for ``path`` at this
    point: before the answer (``windows_sent`` 0) or after that many windows of a decode."""
    for rule in os.environ.get(FAULT_ENV, "").split(","):
        where, _, text = rule.partition(":")
        kind, _, after = where.partition("@")
        if not text or text not in path or int(after or 0) != windows_sent:
            continue
        if kind == "hang":
            time.sleep(3600)
        elif kind == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)


def _describe(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, NoAudioError):
        return ("no_audio", str(exc))
    if isinstance(exc, MediaError):
        return ("media", str(exc))
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return ("other", f"{type(exc).__name__}: {first}")


def serve(inbox: Connection, outbox: Connection) -> None:
    """Answer probe, audio and decode requests until the parent closes the pipe."""
    from raypipe.media.audio import load_audio
    from raypipe.media.probe import probe
    from raypipe.media.video import iter_windows

    while True:
        try:
            request = inbox.recv()
        except (EOFError, OSError):
            return
        command = request[0]
        path = request[1].path if command == "decode" else request[1]
        _fault(path)
        try:
            if command == "probe":
                outbox.send(("info", probe(path)))
            elif command == "audio":
                outbox.send(("audio", load_audio(path, request[2])))
            else:
                _, info, fps, max_side, max_frames, window = request
                for sent, part in enumerate(
                    iter_windows(info, fps, max_side, max_frames, window), start=1
                ):
                    outbox.send(("window", part))
                    _fault(path, sent)
                outbox.send(("end", None))
        except (BrokenPipeError, EOFError):
            return
        except Exception as exc:  # every decoder failure goes back to the parent as a message
            outbox.send(("error", _describe(exc)))


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Exit when process ``parent`` is gone (even while a decoder hangs in code that releases
    the GIL, as FFmpeg calls do): a killed actor leaves no child behind. The pid comes from the
    parent itself, since it may die before this process has finished starting."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    """Entry point of the child: ``python -m raypipe.media.decoder_process IN_FD OUT_FD PID``."""
    logging.basicConfig(level=logging.WARNING, format="decoder %(levelname)s: %(message)s")
    _exit_with_parent(int(sys.argv[3]))
    inbox = Connection(int(sys.argv[1]), writable=False)
    outbox = Connection(int(sys.argv[2]), readable=False)
    serve(inbox, outbox)


if __name__ == "__main__":
    main()
