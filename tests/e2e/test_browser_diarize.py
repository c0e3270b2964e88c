"""The page's timeline in a real headless browser (Debian's Chromium driven by Playwright): a meeting of real
voices is uploaded, and a row of bars per speaker appears, under the speaker's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fixed_threshold, live_server
from playwright.sync_api import expect, sync_playwright

from speakerid.audio import SAMPLE_RATE, write_wav
from speakerid.meetings import build_meeting, plan_meetings
from speakerid.server import create_app
from speakerid.voices import VoiceRegistry

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_timeline_of_an_uploaded_meeting(so125, tmp_path):
    assert CHROMIUM.is_file(), f"the browser test needs Debian's Chromium at {CHROMIUM} (make browser)"
    enrollment, [plan] = plan_meetings(so125, 1, enrolled=2, strangers=1, seed=4)
    voices = VoiceRegistry(tmp_path / "voices.db")
    for speaker, files in enrollment.items():
        voices.enroll(speaker, files)
    voices.registry.set_scoring(fixed_threshold(voices, 0.8))
    voices.close()
    meeting = build_meeting(plan)
    write_wav(tmp_path / "meeting.wav", meeting.audio[: 50 * SAMPLE_RATE])
    with live_server(create_app(tmp_path / "voices.db")) as url, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(tmp_path / "profile", executable_path=str(CHROMIUM),
                                                                headless=True, args=CHROMIUM_ARGS)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_label("Recording of a meeting or call").set_input_files(tmp_path / "meeting.wav")
        expect(page.locator("#diarize-result .summary")).to_contain_text("meeting.wav:")
        names = page.locator("#diarize-result .timeline .name").all_text_contents()
        assert set(names) & set(plan.enrolled) and len(names) >= 2, names
        expect(page.locator("#diarize-result .timeline .bar").first).to_be_visible()
        assert page.locator("#diarize-result .bar").count() >= len(names)
        page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
        context.close()
