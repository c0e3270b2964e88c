"""calibration: the metrics on hand-made scores, and `calibrate` on real recordings with the GE2E encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speakerid.audio import load_audio, write_wav
from speakerid.calibration import calibrate, det_curve, eer, enrollment_split, min_dcf, threshold_at_far
from speakerid.errors import CorpusError
from speakerid.registry import Registry

# Scores worked out by hand in the comments below.
TARGETS = [0.2, 0.6, 0.7, 0.9]
NONTARGETS = [0.1, 0.3, 0.4, 0.8]


def test_det_curve_lists_every_operating_point_halfway_between_scores():
    thresholds, far, frr = det_curve(TARGETS, NONTARGETS)
    assert thresholds == pytest.approx([0.1, 0.15, 0.25, 0.35, 0.5, 0.65, 0.75, 0.85, np.nextafter(0.9, 1)])
    assert far == pytest.approx([1, 0.75, 0.75, 0.5, 0.25, 0.25, 0.25, 0, 0])
    assert frr == pytest.approx([0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 1])


def test_eer_on_an_operating_point():
    # Accepting scores >= 0.5 misses 0.2 (1 of 4 targets) and accepts 0.8 (1 of 4 non-targets).
    assert eer(TARGETS, NONTARGETS) == pytest.approx((0.25, 0.5))


def test_eer_interpolates_between_operating_points():
    # At 0.4: miss 1/3 (0.3), false accepts 1/2 (0.5); at 0.55: miss 1/3, false accepts 0.
    # The segment between them meets FAR = FRR a third of the way along: EER 1/3 at 0.4 + 0.15 / 3.
    assert eer([0.3, 0.6, 0.8], [0.1, 0.5]) == pytest.approx((1 / 3, 0.45))


def test_eer_of_separated_scores_is_zero_in_the_middle_of_the_gap():
    assert eer([0.8, 0.9], [0.1, 0.2]) == pytest.approx((0.0, 0.5))


def test_eer_of_swapped_scores_is_one():
    # Every target scores below every non-target: no threshold does better than all wrong at once.
    rate, _ = eer([0.1, 0.2], [0.8, 0.9])
    assert rate == pytest.approx(1.0)


def test_threshold_at_far():
    # One false accept in four is 25 %: 0.5 allows it (0.8) and misses only 0.2; lower thresholds
    # miss as few but accept more, higher ones miss more.
    assert threshold_at_far(TARGETS, NONTARGETS, 0.25) == pytest.approx((0.5, 0.25, 0.25))
    # None allowed: the threshold must pass 0.8, and then misses 0.2, 0.6 and 0.7.
    assert threshold_at_far(TARGETS, NONTARGETS, 0.0) == pytest.approx((0.85, 0.0, 0.75))
    # 24.9 % allows no false accept out of four either.
    assert threshold_at_far(TARGETS, NONTARGETS, 0.249)[0] == pytest.approx(0.85)


def test_threshold_at_far_prefers_fewer_false_accepts_when_misses_tie():
    # 50 % would allow accepting 0.2, but 0.5 misses no target either and accepts no non-target.
    assert threshold_at_far([0.8, 0.9], [0.1, 0.2], 0.5) == pytest.approx((0.5, 0.0, 0.0))


def test_threshold_at_far_counts_false_accepts_exactly():
    # 1 % of 300 non-targets is exactly 3 false accepts, in spite of floating-point rounding.
    nontargets = np.linspace(0, 0.5, 300)
    targets = nontargets + 1e-3  # each false accept given up costs a miss: the rate is used to the full
    threshold, far, _ = threshold_at_far(targets, nontargets, 0.01)
    assert (nontargets >= threshold).sum() == 3
    assert far == pytest.approx(0.01)


def test_min_dcf():
    # p_target = 0.5: the normalised cost is FRR + FAR, lowest (0.25 + 0.25) at 0.5.
    assert min_dcf(TARGETS, NONTARGETS, p_target=0.5) == pytest.approx((0.5, 0.5))
    # p_target = 0.01: cost = FRR + 99 FAR, so no false accept may pass: 0.75 + 0 at 0.85,
    # better than rejecting everything (1.0).
    assert min_dcf(TARGETS, NONTARGETS, p_target=0.01) == pytest.approx((0.75, 0.85))
    # Costs weigh the errors: with p_target = 0.5 a miss costing 10 makes cost = 10 FRR + FAR,
    # lowest (0 + 0.75) at 0.15, below the lowest target.
    assert min_dcf(TARGETS, NONTARGETS, p_target=0.5, c_miss=10) == pytest.approx((0.75, 0.15))


def test_metrics_refuse_empty_or_broken_scores():
    with pytest.raises(ValueError, match="no target scores"):
        eer([], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        min_dcf([0.5], [np.nan])


# ---------------------------------------------------------------- the split


def link_speakers(source: Path, dest: Path, speakers: list[str], takes: int | None = None) -> Path:
    for speaker in speakers:
        (dest / speaker).mkdir(parents=True)
        for take in sorted((source / speaker).iterdir())[:takes]:
            (dest / speaker / take.name).symlink_to(take)
    return dest


def test_enrollment_split_is_by_recording_seeded_and_stable(dsp20, tmp_path):
    speakers = sorted(p.name for p in dsp20.iterdir() if p.is_dir())
    enrollment, trials, skipped = enrollment_split(dsp20, enroll_per_speaker=3, seed=0)
    assert sorted(enrollment) == sorted(trials) == speakers and skipped == []
    for speaker in speakers:
        assert len(enrollment[speaker]) == 3 and len(trials[speaker]) == 2
        assert sorted(enrollment[speaker] + trials[speaker]) == sorted((dsp20 / speaker).glob("*.flac"))
    assert enrollment_split(dsp20, 3, seed=0)[0] == enrollment
    assert enrollment_split(dsp20, 3, seed=1)[0] != enrollment
    # another speaker set leaves each speaker's own split as it was
    subset = link_speakers(dsp20, tmp_path / "subset", speakers[5:8])
    moved, _, _ = enrollment_split(subset, 3, seed=0)
    assert {s: [p.name for p in v] for s, v in moved.items()} == {s: [p.name for p in enrollment[s]] for s in speakers[5:8]}
    # at most all recordings but one enroll; a single recording cannot be split
    uneven = link_speakers(dsp20, tmp_path / "uneven", speakers[:1])
    link_speakers(dsp20, uneven, speakers[1:2], takes=1)
    enrollment, trials, skipped = enrollment_split(uneven, enroll_per_speaker=10)
    assert (len(enrollment[speakers[0]]), len(trials[speakers[0]])) == (4, 1)
    assert skipped == [(speakers[1], "one recording; calibration needs one to enroll and one to test")]


# ---------------------------------------------------------------- calibrate with GE2E


@pytest.fixture(scope="module")
def short_takes(dsp20, tmp_path_factory):
    """4 real dsp20 speakers x 3 takes cut to 6 s (short keeps the test fast), and a fifth speaker with one take."""
    root = tmp_path_factory.mktemp("calibration") / "data"
    speakers = sorted(p for p in dsp20.iterdir() if p.is_dir())[:5]
    for i, folder in enumerate(speakers):
        (root / folder.name).mkdir(parents=True)
        for take in sorted(folder.glob("*.flac"))[: 3 if i < 4 else 1]:
            audio = load_audio(take)
            write_wav(root / folder.name / f"{take.stem}.wav", audio[2 * 16000 : 8 * 16000])
    return root


@pytest.fixture(scope="module")
def calibrated(short_takes, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated")
    result = calibrate(out / "voices.db", short_takes, enroll_per_speaker=2, trial_seconds=3.0, out=out / "det.png",
                       progress=False)
    return out, result


def test_calibrate_scores_every_trial_against_every_speaker(calibrated, short_takes):
    _, result = calibrated
    speakers = sorted(p.name for p in short_takes.iterdir())
    assert result.speakers == speakers[:4]
    assert result.skipped == [(speakers[4], "one recording; calibration needs one to enroll and one to test")]
    for speaker in result.speakers:
        enrolled, tested = result.enrollment[speaker], result.trials[speaker]
        assert len(enrolled) == 2 and len(tested) == 1 and not set(enrolled) & set(tested)
        assert all(r.startswith(f"{speaker}/") for r in enrolled + tested)
    # each 6-s trial take gives two 3-s clips, scored against all 4 references
    assert len(result.target_scores) == 4 * 2
    assert len(result.nontarget_scores) == 4 * 2 * 3


def test_calibrate_measures_and_stores_the_threshold(calibrated):
    out, result = calibrated
    assert result.target_scores.mean() > result.nontarget_scores.mean() + 0.1
    assert 0 <= result.eer < 0.25
    # 1 % of 24 non-target trials allows none: the threshold lies above every non-target score
    assert result.far_measured == 0 and result.threshold > result.nontarget_scores.max()
    assert result.frr == pytest.approx(np.mean(result.target_scores < result.threshold))
    assert (out / "det.png").stat().st_size > 10_000 and result.plot == str(out / "det.png")

    registry = Registry(out / "voices.db", create=False)
    stored = registry.threshold
    assert stored["value"] == pytest.approx(result.threshold)
    assert stored["eer"] == pytest.approx(result.eer) and stored["min_dcf"] == pytest.approx(result.min_dcf)
    assert stored["target_trials"] == 8 and stored["calibrated_at"] == result.calibrated_at
    # the new registry records the encoder the threshold belongs to, and enrolls nobody
    assert registry.encoder_spec == {"kind": "ge2e"} and registry.speakers() == []
    json.dumps(result.to_dict())


def test_calibrate_without_store_writes_nothing(calibrated, short_takes, tmp_path):
    out, stored = calibrated
    dry = calibrate(out / "voices.db", short_takes, enroll_per_speaker=1, far=0.2, store=False, progress=False)
    assert not dry.stored and dry.trial_seconds is None and len(dry.target_scores) == 4 * 2
    assert Registry(out / "voices.db").threshold == stored.threshold_info()
    # nor creates a registry that is not there
    two = link_speakers(short_takes, tmp_path / "two", sorted(p.name for p in short_takes.iterdir())[:2], takes=2)
    calibrate(tmp_path / "new.db", two, enroll_per_speaker=1, store=False, progress=False)
    assert not (tmp_path / "new.db").exists()


def test_calibrate_needs_two_usable_speakers(short_takes, tmp_path):
    one = link_speakers(short_takes, tmp_path / "one", [sorted(p.name for p in short_takes.iterdir())[0]])
    with pytest.raises(CorpusError, match="at least 2 speakers"):
        calibrate(tmp_path / "r.db", one, progress=False)
    with pytest.raises(CorpusError, match="false-accept rate"):
        calibrate(tmp_path / "r.db", short_takes, far=1.5, progress=False)
    assert not (tmp_path / "r.db").exists()
