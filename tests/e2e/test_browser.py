"""The web page in a real headless browser: Debian's Chromium driven by Playwright, against the
service on a loopback port. Speakers are enrolled through the page's form, then held-out real
recordings are identified by choosing a file and by dropping one."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from conftest import live_server

from speakerid.audio import SAMPLE_RATE, load_audio, write_wav
from speakerid.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "page-token"
SPEAKERS = 3
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def clips(dsp20, tmp_path_factory) -> SimpleNamespace:
    """WAV files of 3 dsp20 speakers: two 10-s clips each to enroll (takes 1-2), one held-out 8-s clip (take 5)."""
    root = tmp_path_factory.mktemp("page-clips")
    enroll, held_out = {}, {}

    def clip(source: Path, start: float, seconds: float, dest: Path) -> Path:
        write_wav(dest, load_audio(source)[int(start * SAMPLE_RATE) : int((start + seconds) * SAMPLE_RATE)])
        return dest

    for folder in sorted(p for p in dsp20.iterdir() if p.is_dir())[:SPEAKERS]:
        name = folder.name
        enroll[name] = [clip(folder / f"take0{k}.flac", 2, 10, root / f"{name}-enroll{k}.wav") for k in (1, 2)]
        held_out[name] = clip(folder / "take05.flac", 5, 8, root / f"{name}-question.wav")
    return SimpleNamespace(names=sorted(enroll), enroll=enroll, held_out=held_out)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Page:
    assert CHROMIUM.is_file(), (
        f"the browser test needs Debian's Chromium at {CHROMIUM}; install it with `make browser` "
        "(apt-get install chromium), as `make test` does"
    )
    app = create_app(tmp_path_factory.mktemp("page") / "voices.db", token=TOKEN)
    with live_server(app) as url, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url)
        yield page
        context.close()
    assert requested and all(u.startswith(url) for u in requested), f"the page fetched from elsewhere: {requested}"


@pytest.fixture(scope="module")
def enrolled(page, clips) -> Page:
    """The page after enrolling the speakers through its form, with the server's token."""
    expect(page.locator("#status")).to_contain_text("0 enrolled")
    page.get_by_label("Token", exact=True).fill(TOKEN)
    for name in clips.names:
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Recordings", exact=True).set_input_files(clips.enroll[name])
        page.get_by_role("button", name="Enroll").click()
        expect(page.locator("#enroll-result")).to_contain_text(f"Enrolled {name}: 2 added")
    return page


def test_enroll_through_the_form(enrolled, clips):
    page = enrolled
    expect(page.locator("#speakers tr")).to_have_count(SPEAKERS)
    expect(page.locator("#speakers tr td:first-child")).to_have_text(clips.names)
    expect(page.locator("#status")).to_contain_text(f"{SPEAKERS} enrolled")

    # a wrong token is refused, and the page says so
    page.get_by_label("Name", exact=True).fill("intruder")
    page.get_by_label("Recordings", exact=True).set_input_files(clips.held_out[clips.names[0]])
    page.get_by_label("Token", exact=True).fill("not-the-token")
    page.get_by_role("button", name="Enroll").click()
    expect(page.locator("#enroll-result .error")).to_contain_text("wrong token")
    expect(page.locator("#speakers tr")).to_have_count(SPEAKERS)


def test_choose_a_recording_and_see_who_speaks(enrolled, clips):
    page, name = enrolled, clips.names[1]
    page.get_by_label("Drop a recording here, or choose a file").set_input_files(clips.held_out[name])
    expect(page.locator("#identify-result .verdict")).to_have_text(name)
    expect(page.locator("#identify-result .ranking li")).to_have_count(SPEAKERS)
    expect(page.locator("#identify-result .ranking li .name").first).to_have_text(name)
    expect(page.locator("#identify-result")).to_contain_text(f"{name}-question.wav: score 0.")


def test_drop_a_recording(enrolled, clips):
    page, name = enrolled, clips.names[2]
    path = clips.held_out[name]
    transfer = page.evaluate_handle(
        """([fileName, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], fileName, { type: "audio/wav" }));
            return transfer;
        }""",
        [path.name, base64.b64encode(path.read_bytes()).decode()],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#identify-result .verdict")).to_have_text(name)
    expect(page.locator("#identify-result")).to_contain_text(path.name)
