"""A stand-in `webrtcvad` module, so that Resemblyzer (the reference implementation the tests and
benchmarks compare GE2E with) imports: its `webrtcvad` imports pkg_resources, which current
setuptools no longer ships. It offers the same 10-line `Vad` wrapper over the same C extension
(`_webrtcvad`), without touching the environment."""

from __future__ import annotations

import types


def webrtcvad_stand_in() -> types.ModuleType:
    import _webrtcvad

    class Vad:
        def __init__(self, mode=None):
            self._vad = _webrtcvad.create()
            _webrtcvad.init(self._vad)
            if mode is not None:
                _webrtcvad.set_mode(self._vad, mode)

        def is_speech(self, buf, sample_rate, length=None):
            return _webrtcvad.process(self._vad, sample_rate, buf, length or len(buf) // 2)

    module = types.ModuleType("webrtcvad")
    module.Vad = Vad
    return module
