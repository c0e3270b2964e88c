"""server: speakerid over HTTP, with a small web page.

Endpoints: `POST /identify`, `POST /verify`, `POST /enroll`, `POST /diarize`, `GET /speakers`,
`DELETE /speakers/{name}`, `GET /health`, the page at `GET /` (and its icon at
`/favicon.ico`) and the API's description at `GET /openapi.json` (no /docs or /redoc: they
load their JavaScript from a CDN).

Uploads are multipart/form-data. The encoder loads once, when the app is made; requests run
concurrently in FastAPI's thread pool (the registry gives each thread its own SQLite connection,
and the encoders are thread-safe). When a token is set, the write endpoints (enroll, delete)
need `Authorization: Bearer TOKEN`; the read endpoints stay open.

Every error a client can cause is answered with a 4xx status and the JSON body
`{"error": "<what kind>", "detail": "<what went wrong and how to fix it>"}`:
400 empty upload or a body that is not valid multipart, 401 missing or wrong token, 404 unknown
speaker or path, 409 nobody enrolled (or another registry conflict), 413 a request body over
`max_bytes` (counted while it arrives) or a recording whose header declares more than
`max_seconds` (or more samples than `max_seconds` of 48-kHz stereo), 415 a POST body that is not
multipart/form-data, 422 unreadable audio, audio without enough speech, an invalid speaker name,
or a missing field.

Choices, the same as the command line's where both do a thing:
- `POST /enroll` with a name already enrolled adds the recordings to that speaker (`replace`
  drops the earlier ones instead); the answer's `created` says whether the speaker is new.
- `POST /enroll` enrolls the files it can and lists the others in `failed` with their reasons
  (200); only when no file could be used is it refused (422, every file's reason). Limits are
  the service's: a body or recording over them refuses the whole request (413).
- `POST /verify` names the file (a or b, by its file name) that could not be used.
- `DELETE /speakers/{name}` takes the name percent-encoded, so any name can be removed, a
  "/" inside it included (written before names were checked).
- `GET /health` is open: it shows what a client needs to read the answers (encoder, threshold
  and how it was calibrated, limits), never a path on the server's disk.
- `create_app` creates a missing registry (as `VoiceRegistry` does); `serve`, like
  `speakerid serve`, refuses a missing one unless `create`, so that a mistyped path is not
  served as an empty registry.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of the endpoints,
# closures inside create_app, at run time.
import hashlib
import io
import logging
import secrets
from contextlib import asynccontextmanager, contextmanager
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Annotated, Iterator

import numpy as np
import soundfile as sf
import torch
import uvicorn
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from speakerid import __version__
from speakerid.audio import decode_audio
from speakerid.errors import AudioError, RegistryError, SpeakerNameError
from speakerid.threads import INFERENCE_THREADS, use_threads
from speakerid.voices import EnrollResult, VoiceRegistry

__all__ = ["create_app", "serve", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_SECONDS"]

DEFAULT_MAX_BYTES = 20 * 2**20
DEFAULT_MAX_SECONDS = 300.0
MAX_TOP_K = 100
# Decoding allocates what the header declares: a few kB of FLAC silence can declare 8 channels at
# 192 kHz. A recording may decode to at most max_seconds of 48-kHz stereo (115 MB for 300 s).
MAX_SAMPLES_PER_SECOND = 2 * 48_000
# What /health tells anyone about the calibration: its figures, never where its data lay.
HEALTH_SCORING_FIELDS = ("operating_point", "named_right", "strangers_rejected", "top1", "enrolled_trials",
                         "stranger_trials", "simulated_stranger_trials", "speakers", "eer", "min_dcf", "weights", "weights_by", "gap",
                         "by_length", "calibrated_at")
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           'fill="#2456c7"/><path d="M4 6v4M8 3v10M12 5v6" stroke="#fff" stroke-width="2" stroke-linecap="round"/></svg>')

log = logging.getLogger("speakerid.server")


class ErrorBody(BaseModel):
    """The JSON body of every error answer."""

    error: str
    detail: str


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class ApiError(HTTPException):
    """A request the service refuses: `status` with the JSON body {"error": error, "detail": detail}.

    An HTTPException, so that FastAPI lets it through while it parses a request body.
    """

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(status, detail, headers)
        self.error = error

    def response(self) -> JSONResponse:
        return _error(self.status_code, self.error, self.detail, self.headers)


def _errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI descriptions of the error answers a route gives."""
    return {status: {"model": ErrorBody, "description": HTTPStatus(status).phrase} for status in statuses}


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.3g} MiB"


def _header(data: bytes) -> tuple[int, int, int] | None:
    """(frames, sample rate, channels) as an audio file's header declares them; None without a readable header."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            return f.frames, f.samplerate, f.channels
    except (RuntimeError, ValueError, EOFError, OSError):
        return None  # decode_audio then says what is wrong with the file


def _body_too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "upload too large", f"the request body is over the server's limit of {_megabytes(max_bytes)}; "
                                             "send a smaller file, or fewer files at once")


@contextmanager
def _labelled(name: str) -> Iterator[None]:
    """Name the upload in the AudioErrors raised within (the registry calls in-memory audio "<audio>")."""
    try:
        yield
    except AudioError as err:
        raise AudioError(name, err.reason) from None


class BodyLimit:
    """ASGI middleware refusing request bodies over `max_bytes`: by their Content-Length before
    reading them, and by counting the bytes as they arrive (a chunked or lying client included)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            return await _body_too_large(self.max_bytes).response()(scope, receive, send)
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _body_too_large(self.max_bytes)  # inside the app: answered by its HTTPException handler
            return message

        await self.app(scope, receive_counted, send)


def create_app(registry: str | Path, model: str | Path | None = None, token: str | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS,
               device: str = "auto", engine: str = "torch", create: bool = True) -> FastAPI:
    """The HTTP service for the speakers of `registry`, with its encoders loaded.

    `model` is a run directory (None: the registry's own encoder, or GE2E for a new registry).
    `token`, when given, guards enrolling and removing speakers. A request body over
    `max_bytes` or a recording over `max_seconds` is refused with 413. `engine` "onnx" computes a
    trained run's embeddings with onnxruntime (see `speakerid.deploy.use_engine`). A missing
    registry file is created, or refused when not `create`.
    """
    index_html = (resources.files("speakerid") / "static" / "index.html").read_text(encoding="utf-8")
    voices = VoiceRegistry(registry, model, device, create=create)
    try:
        encoders = voices.encoders  # loaded here, once: a bad model fails now, not on the first request
        if engine != "torch":
            _use_engine(encoders[0], engine)
    except BaseException:
        voices.close()
        raise

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        voices.close()

    app = FastAPI(
        title="speakerid",
        version=__version__,
        description="Who is speaking? Identify, verify and enroll speakers from recordings.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    # ------------------------------------------------------------ errors

    @app.exception_handler(AudioError)
    async def audio_error(request: Request, exc: AudioError) -> JSONResponse:
        return _error(422, "bad audio", str(exc))

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        if isinstance(exc, SpeakerNameError):
            return _error(422, "invalid name", str(exc))
        return _error(409, "registry conflict", str(exc))

    @app.exception_handler(HTTPException)  # ours, and the framework's: unknown path, wrong method, malformed body
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, ApiError):
            return exc.response()
        detail = {
            400: f"{str(exc.detail).rstrip('.')}; send the files as multipart/form-data, as an HTML form does",
            404: f"{request.url.path} is not a path of this service; GET /openapi.json describes them",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, HTTPStatus(exc.status_code).phrase.lower(), detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and not content_type.lower().startswith("multipart/form-data"):
            return _error(415, "unsupported media type",
                          f"{request.url.path} takes multipart/form-data (files as an HTML form sends them), "
                          f"not {content_type or 'a body without a content type'}")
        problems = "; ".join(f"{' '.join(str(part) for part in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
                             for e in exc.errors())
        return _error(422, "invalid request", problems)

    @app.exception_handler(Exception)  # a bug of ours: still the one JSON shape (uvicorn logs the traceback)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal server error", f"the server failed ({type(exc).__name__}); see its log")

    # ------------------------------------------------------------ helpers

    bearer = HTTPBearer(auto_error=False, description="The token the server was started with (--token).")

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        given = "" if credentials is None else credentials.credentials
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "unauthorized",
                           "this needs the server's token: send the header 'Authorization: Bearer TOKEN'"
                           if credentials is None else "wrong token; use the one the server was started with",
                           headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(require_token)] if token is not None else []

    def read(upload: UploadFile) -> tuple[bytes, str]:
        """An upload's bytes and name; ApiError for an empty one."""
        name = Path(upload.filename or "").name or "upload"  # the file's name, without the client's folders
        data = upload.file.read()
        if not data:
            raise ApiError(400, "empty upload", f"{name} is empty; choose an audio file")
        return data, name

    def decode(data: bytes, name: str) -> np.ndarray:
        """Mono float32 at the encoder's rate; refused before decoding when its header declares too much."""
        header = _header(data)
        if header is not None:
            frames, rate, channels = header
            if frames > max_seconds * rate:
                raise ApiError(413, "recording too long", f"{name} lasts {frames / rate:.1f} s; the server takes "
                                                          f"recordings of at most {max_seconds:g} s, cut it shorter")
            if frames * channels > max_seconds * MAX_SAMPLES_PER_SECOND:
                raise ApiError(413, "recording too large",
                               f"{name} holds {frames / rate:.1f} s of {channels} channels at {rate} Hz, more than the "
                               f"server decodes ({max_seconds:g} s of 48-kHz stereo); downmix or resample it")
        return decode_audio(data, name=name)

    Upload = Annotated[UploadFile, File(description="a recording (WAV, FLAC, OGG, MP3, ...)")]

    # ------------------------------------------------------------ endpoints

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(index_html)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/health", summary="The encoder, how many speakers are enrolled, and the decision threshold")
    def health() -> dict:
        scoring = voices.scoring
        default = voices.encoder.default_threshold
        calibrated = scoring.identify is not None
        source = scoring.source if calibrated else scoring.decision("identify", None, default).source
        return {
            "status": "ok",
            "version": __version__,
            "encoders": list(scoring.fusion.encoders) if voices.registry.encoders() else [voices.encoder.name],
            "speakers": len(voices.speakers()),
            # (seconds, threshold) by length of audio; one threshold for any length is [null, value]
            "thresholds": scoring.identify if calibrated else ([[None, default]] if default is not None else []),
            "threshold_source": source,
            "scoring": {k: scoring.details[k] for k in HEALTH_SCORING_FIELDS if k in scoring.details},
            "token_required": token is not None,
            "max_bytes": max_bytes,
            "max_seconds": max_seconds,
            "torch_threads": torch.get_num_threads(),
        }

    @app.post("/identify", summary="Who speaks in a recording: the enrolled speakers ranked, or unknown",
              responses=_errors(400, 409, 413, 415, 422))
    def identify(file: Upload, top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 3) -> dict:
        data, source = read(file)
        audio = decode(data, source)
        try:
            with _labelled(source):
                answer = voices.identify(audio, top_k)
        except RegistryError:
            raise ApiError(409, "no speakers enrolled", "nobody is enrolled yet; enroll speakers first (POST /enroll)") from None
        return answer.to_dict()

    @app.post("/verify", summary="Whether two recordings share a speaker",
              responses=_errors(400, 413, 415, 422))
    def verify(a: Upload, b: Upload) -> dict:
        (data_a, source_a), (data_b, source_b) = read(a), read(b)
        audio_a, audio_b = decode(data_a, source_a), decode(data_b, source_b)
        try:
            return voices.verify(audio_a, audio_b).to_dict()
        except AudioError as err:
            # which of the two (or both): embedding each alone names it; paid only when one failed
            problems = []
            for field_name, audio, source in (("a", audio_a, source_a), ("b", audio_b, source_b)):
                try:
                    voices.embed([audio], [source])
                except AudioError as own:
                    problems.append(f"{own.path} ({field_name}): {own.reason}")
            raise ApiError(422, "bad audio", "; ".join(problems) or str(err)) from None

    @app.post("/enroll", summary="Enroll a speaker from one or more recordings", dependencies=guarded,
              responses=_errors(400, 401, 409, 413, 415, 422))
    def enroll(name: Annotated[str, Form(min_length=1, description="the speaker's name")],
               files: Annotated[list[UploadFile], File(description="recordings of the speaker")],
               replace: Annotated[bool, Form(description="drop the speaker's earlier recordings")] = False) -> dict:
        # Over-limit uploads refuse the request before anything changes; a file that cannot be
        # used is reported in `failed` and the others are enrolled, as `speakerid enroll` does.
        total = EnrollResult(name)
        uploads = []
        for upload in files:
            source = Path(upload.filename or "").name or "upload"
            data = upload.file.read()
            try:
                if not data:
                    raise AudioError(source, "is empty; choose an audio file")
                uploads.append((data, source, decode(data, source)))
            except AudioError as err:
                total.failed.append((source, err.reason))
        enrolled_before = {s["name"] for s in voices.speakers()}
        for data, source, audio in uploads:
            # `replace` drops the earlier embeddings once, with the first file that enrolls
            result = voices.enroll_audio(name, audio, source, hashlib.sha256(data).hexdigest(),
                                         replace=replace and not total.added)
            total.speaker = result.speaker
            total.added += result.added
            total.skipped += result.skipped
            total.failed += result.failed
            total.recordings = result.recordings
        if total.failed and not (total.added or total.skipped):
            raise ApiError(422, "bad audio", "; ".join(f"{source}: {reason}" for source, reason in total.failed))
        return {**total.to_dict(), "created": total.speaker not in enrolled_before}

    # ------------------------------------------------------------ diarize (issue 9)

    @app.post("/diarize", summary="Who spoke when: turns with enrolled names, unknown-N for the others",
              responses=_errors(400, 413, 415, 422))
    def diarize(file: Upload) -> dict:
        from speakerid.diarize import diarize_audio

        data, source = read(file)
        audio = decode(data, source)
        header = _header(data)
        with _labelled(source):
            result = diarize_audio(voices, audio, source, channels=header[2] if header else 1)
        return result.to_dict()

    # ------------------------------------------------------------ end of diarize

    @app.get("/speakers", summary="The enrolled speakers")
    def speakers() -> dict:
        return {"speakers": voices.speakers()}

    # `:path` so that a name holding a "/" (percent-encoded by the client) still reaches this route
    @app.delete("/speakers/{name:path}", summary="Forget a speaker", dependencies=guarded,
                responses=_errors(401, 404))
    def remove(name: str) -> dict:
        if name not in {s["name"] for s in voices.speakers()}:
            raise ApiError(404, "unknown speaker", f"no speaker {name!r} is enrolled; GET /speakers lists them")
        voices.remove(name)
        return {"removed": name}

    return app


def _use_engine(encoder, engine: str) -> None:
    """Run a trained run's encoder with `engine`; the GE2E encoder has no other engine."""
    from speakerid.deploy import use_engine
    from speakerid.encoders import RunEncoder
    from speakerid.errors import ModelError

    if not isinstance(encoder, RunEncoder):
        raise ModelError(f"--engine {engine} runs a trained run's model; the registry's encoder is {encoder.name}, "
                         "which runs in PyTorch: start the service with --model RUN, or without --engine")
    use_engine(encoder.run, engine)


def serve(registry: str | Path, model: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS,
          device: str = "auto", threads: int | None = INFERENCE_THREADS, engine: str = "torch",
          create: bool = False) -> None:
    """Serve `create_app(...)` with uvicorn on host:port until interrupted.

    Requests run concurrently in a thread pool, each with `threads` torch threads (None: torch's
    default, all cores). One thread each answered 1.5x more requests than torch's default under 8
    clients on 2 cores, at a lower p99 (docs/benchmarks.md). A registry file that does not exist
    is refused (a mistyped path would otherwise serve an empty registry) unless `create`.
    """
    if not create and not Path(registry).exists():
        raise RegistryError(f"{registry}: no such registry; check the path, or pass --create to start an empty one")
    use_threads(threads)
    app = create_app(registry, model, token, max_bytes, max_seconds, device, engine, create=create)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without a token: anyone who can reach it can enroll and remove speakers "
                    "(start it with --token)", host)
    uvicorn.run(app, host=host, port=port)
