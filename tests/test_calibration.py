"""calibration: the metrics and the open-set fit on hand-made scores, and `calibrate` on real recordings with GE2E."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from speakerid.audio import load_audio, write_wav
from speakerid.calibration import (LEAD_WEIGHT, Trials, calibrate, det_curve, eer, fit_scoring, min_dcf, open_set_curve, operating_point,
                                   threshold_at_far)
from speakerid.errors import CorpusError
from speakerid.registry import Registry
from speakerid.scoring import Fusion
from speakerid.voices import VoiceRegistry

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


# ---------------------------------------------------------------- open-set identification


def test_open_set_curve_counts_names_and_rejections():
    # three enrolled trials (best scores 0.9 right, 0.7 right, 0.8 wrong speaker) and two strangers (0.6, 0.75)
    thresholds, named, rejected = open_set_curve(np.array([0.9, 0.7, 0.8]), np.array([True, True, False]),
                                                 np.array([0.6, 0.75]))
    at = lambda t: int(np.argmin(np.abs(thresholds - t)))
    assert (named[at(0.65)], rejected[at(0.65)]) == (pytest.approx(2 / 3), 0.5)
    assert (named[at(0.85)], rejected[at(0.85)]) == (pytest.approx(1 / 3), 1.0)
    # a wrongly named enrolled voice never counts as named right, whatever the threshold
    assert named.max() == pytest.approx(2 / 3)
    # balanced: the worse of the two shares is best: 2/3 named and half the strangers rejected (between
    # 0.6 and 0.7) beats 1/3 named and all rejected (between 0.75 and 0.8)
    i = operating_point(thresholds, named, rejected, None)
    assert 0.6 < thresholds[i] <= 0.7 and (named[i], rejected[i]) == (pytest.approx(2 / 3), 0.5)
    # with a false-accept rate of 0: the lowest threshold that lets no stranger in
    j = operating_point(thresholds, named, rejected, far=0.0)
    assert 0.75 < thresholds[j] <= 0.8 and (named[j], rejected[j]) == (pytest.approx(1 / 3), 1.0)


def test_a_single_encoder_fuses_to_its_own_cosine():
    fusion = Fusion.single("e")
    scores = np.array([[0.3], [0.9]])
    assert fusion.fuse(scores) == pytest.approx([0.3, 0.9])


def test_fusion_finds_the_weight_where_two_encoders_are_right_together():
    # Two encoders, each blind to another half of the speakers (noise there), sharing the rest:
    # together they separate enrolled voices from strangers better than either alone.
    rng = np.random.default_rng(0)
    speakers, per = 20, 10
    truth = np.repeat(np.arange(speakers), per)

    def cosines(blind: np.ndarray, n: int, own: np.ndarray | None) -> np.ndarray:
        scores = rng.normal(0.2, 0.08, size=(n, speakers))
        if own is not None:
            scores[np.arange(n), own] += np.where(blind[own], 0.05, 0.45)
        return scores

    blind_a, blind_b = np.arange(speakers) < 10, np.arange(speakers) >= 10
    enrolled = np.stack([cosines(blind_a, len(truth), truth), cosines(blind_b, len(truth), truth)], axis=-1)
    strangers = np.stack([cosines(blind_a, 100, None), cosines(blind_b, 100, None)], axis=-1)
    seconds_e, seconds_u = np.full(len(truth), 4.0), np.full(100, 4.0)
    trials = Trials(["a", "b"], [str(i) for i in range(speakers)], enrolled, truth, strangers, seconds_e, seconds_u)
    scoring, report = fit_scoring(trials)
    alone = [fit_scoring(Trials([e], trials.speakers, enrolled[..., [k]], truth, strangers[..., [k]], seconds_e, seconds_u))[1]
             for k, e in enumerate("ab")]
    balanced = lambda r: min(r["named_right"], r["strangers_rejected"])
    assert 0.2 <= scoring.fusion.weights[0] <= 0.8
    assert balanced(report) > max(balanced(r) for r in alone) + 0.1
    assert report["encoder_eer"]["a"] > report["eer"] and report["encoder_eer"]["b"] > report["eer"]
    # the fused scores of non-target trials keep the base encoder's scale
    nontarget = scoring.fusion.fuse(trials.nontarget())
    assert nontarget.mean() == pytest.approx(trials.nontarget()[:, 0].mean(), abs=1e-6)


def test_weights_are_equal_when_the_enrolled_side_is_the_enrollment_audio():
    # Encoder "b" separates these trials far better than "a": fitted on new recordings, the
    # weight goes to it; on the enrollment recordings themselves (cross-validation, the sessions
    # an adapted encoder trained on) the weights stay equal.
    rng = np.random.default_rng(1)
    speakers, per = 20, 10
    truth = np.repeat(np.arange(speakers), per)

    def cosines(n: int, own: np.ndarray | None, spread: float) -> np.ndarray:
        scores = rng.normal(0.2, spread, size=(n, speakers))
        if own is not None:
            scores[np.arange(n), own] += 0.3
        return scores

    enrolled = np.stack([cosines(len(truth), truth, 0.5), cosines(len(truth), truth, 0.1)], axis=-1)
    strangers = np.stack([cosines(100, None, 0.5), cosines(100, None, 0.1)], axis=-1)
    seconds_e, seconds_u = np.full(len(truth), 4.0), np.full(100, 4.0)
    new = Trials(["a", "b"], [str(i) for i in range(speakers)], enrolled, truth, strangers, seconds_e, seconds_u)
    fitted, report = fit_scoring(new)
    assert fitted.fusion.weights[0] <= 0.35 and report["weights_by"].startswith("pairwise EER")
    own = Trials(["a", "b"], new.speakers, enrolled, truth, strangers, seconds_e, seconds_u, from_enrollment=True)
    equal, report = fit_scoring(own)
    assert equal.fusion.weights == pytest.approx((0.5, 0.5)) and report["weights_by"].startswith("equal")


def test_enrolled_trials_join_the_real_strangers_as_voices_not_lengths():
    # Every enrolled trial is also a stranger to the other speakers, after the real strangers; the
    # pairwise non-targets count each score once, and the threshold line ends where the real
    # strangers were measured (here up to 6 s), not at the longest enrolled trial (20 s).
    rng = np.random.default_rng(2)
    speakers, per, n_strangers = 20, 10, 100
    truth = np.repeat(np.arange(speakers), per)
    seconds_e = np.exp(rng.uniform(np.log(1.5), np.log(20.0), len(truth)))
    seconds_u = np.exp(rng.uniform(np.log(1.5), np.log(6.0), n_strangers))

    def cosines(seconds: np.ndarray, own: np.ndarray | None) -> np.ndarray:
        scores = rng.normal(0.2 + 0.03 * np.log(seconds)[:, None], 0.08, size=(len(seconds), speakers))
        if own is not None:
            scores[np.arange(len(seconds)), own] += 0.4
        return scores[..., None]

    enrolled, strangers = cosines(seconds_e, truth), cosines(seconds_u, None)
    both = Trials.simulating_strangers(["e"], [str(i) for i in range(speakers)], enrolled, truth, seconds_e,
                                       strangers=strangers, stranger_seconds=seconds_u)
    assert both.simulated == len(truth) and len(both.strangers) == n_strangers + len(truth)
    assert both.real_strangers().sum() == n_strangers and both.real_strangers()[:n_strangers].all()
    assert len(both.nontarget()) == len(truth) * (speakers - 1) + n_strangers * speakers
    scoring, report = fit_scoring(both)
    assert report["simulated_stranger_trials"] == len(truth) and report["stranger_trials"] == n_strangers + len(truth)
    assert len(scoring.identify) == 2 and scoring.identify[-1][0] <= seconds_u.max() + 1e-3  # a line, ending at 6 s
    # with no real strangers the enrolled trials are all the strangers there are, lengths included
    alone, _ = fit_scoring(Trials.simulating_strangers(["e"], both.speakers, enrolled, truth, seconds_e))
    assert len(alone.identify) == 2 and alone.identify[-1][0] == pytest.approx(seconds_e.max(), abs=1e-3)


# ---------------------------------------------------------------- calibrate with GE2E


def link_speakers(source: Path, dest: Path, speakers: list[str], takes: slice = slice(None)) -> Path:
    for speaker in speakers:
        (dest / speaker).mkdir(parents=True, exist_ok=True)
        for take in sorted((source / speaker).iterdir())[takes]:
            (dest / speaker / take.name).symlink_to(take)
    return dest


@pytest.fixture(scope="module")
def short_takes(dsp20, tmp_path_factory):
    """7 real dsp20 speakers x 4 takes cut to 6 s (short keeps the test fast)."""
    root = tmp_path_factory.mktemp("calibration") / "data"
    for folder in sorted(p for p in dsp20.iterdir() if p.is_dir())[:7]:
        (root / folder.name).mkdir(parents=True)
        for take in sorted(folder.glob("*.flac"))[:4]:
            write_wav(root / folder.name / f"{take.stem}.wav", load_audio(take)[2 * 16000 : 8 * 16000])
    return root


@pytest.fixture(scope="module")
def enrolled(short_takes, tmp_path_factory):
    """The first 4 speakers enrolled from their 4 takes; the other 3 are strangers."""
    out = tmp_path_factory.mktemp("enrolled")
    speakers = sorted(p.name for p in short_takes.iterdir())
    voices = VoiceRegistry(out / "voices.db")
    voices.enroll_folder(link_speakers(short_takes, out / "enroll", speakers[:4]), progress=False)
    voices.close()
    return out / "voices.db", link_speakers(short_takes, out / "strangers", speakers[4:]), speakers


def test_calibrate_cross_validates_the_enrolled_side_and_stores_thresholds_by_length(enrolled, tmp_path):
    path, strangers, speakers = enrolled
    result = calibrate(path, strangers, out=tmp_path / "calibration.png", progress=False)
    report = result.report
    assert result.enrolled_side == "cross-validation" and result.stored
    # every 6-s take gives 5 trials: itself, two 1.5-s and two 3-s clips; each enrolled take is held out once;
    # a clip with too little speech for GE2E is reported, not scored
    real_strangers = report["stranger_trials"] - report["simulated_stranger_trials"]
    assert report["enrolled_trials"] + real_strangers + len(result.failed) == (4 + 3) * 4 * 5
    assert all("+1.5 s]" in clip and "speech" in why for clip, why in result.failed)
    # every enrolled trial is also a stranger to the other speakers, beside the real strangers
    assert report["speakers"] == 4 and report["simulated_stranger_trials"] == report["enrolled_trials"] > 0
    assert report["named_right"] >= 0.6 and report["strangers_rejected"] >= 0.6  # 1.5-s clips of 4 voices included
    # two length groups: the 1.5-s clips, then the 3-s clips with the whole 6-s takes (too few to stand
    # alone); between them, every trial
    groups = report["by_length"]
    assert [g["seconds"] for g in groups] == [1.5, 3.0]
    assert sum(g["enrolled_trials"] for g in groups) == report["enrolled_trials"]
    assert sum(g["stranger_trials"] for g in groups) == report["stranger_trials"]
    assert (tmp_path / "calibration.png").stat().st_size > 20_000 and result.plot == str(tmp_path / "calibration.png")
    stored = Registry(path).scoring
    assert stored["identify"] == [list(p) for p in result.scoring.identify]
    assert stored["verify"] == [list(p) for p in result.scoring.verify]
    assert stored["encoders"] == result.encoders and stored["source"] == "calibrated"
    assert stored["cluster"] == (None if result.scoring.gap == 0 else [list(p) for p in result.scoring.cluster])
    assert json.loads(json.dumps(result.to_dict()))["cluster_thresholds"] == stored["cluster"]
    # the thresholds are a line in log(seconds) over the trials' lengths (1.5 to 6 s): shorter audio scores
    # lower, so its threshold is lower
    (short, low), (long, high) = result.scoring.identify
    assert (short, long) == (1.5, 6.0) and low < high
    for g in report["by_length"]:
        assert g["identify_threshold"] == pytest.approx(result.scoring.decision("identify", seconds=g["seconds"]).value)
    # identification needs a higher bar than one pairwise comparison: a stranger keeps its best of four scores
    assert all(g["identify_threshold"] >= g["verify_threshold"] for g in report["by_length"])

    # --far: at most that share of the stranger trials accepted (over all lengths: the line is one rule)
    strict = calibrate(path, strangers, far=0.05, store=False, progress=False)
    assert 1 - strict.report["strangers_rejected"] <= 0.05 and not strict.stored
    assert Registry(path).scoring == stored  # a dry run writes nothing


def test_trials_are_grouped_by_length_until_each_group_has_enough_of_both_kinds():
    from speakerid.calibration import duration_groups

    enrolled = np.array([1.5] * 30 + [3.0] * 40 + [4.0] * 10 + [41.0] * 25)
    strangers = np.array([1.5] * 25 + [3.0] * 30 + [41.0] * 5)
    groups = duration_groups(enrolled, strangers)
    # 1.5 s stands alone; 3-4 s too; the 25 long enrolled trials have 5 strangers only: they join the 3-4 s group
    assert [(round(s, 2), e.sum(), u.sum()) for s, e, u in groups] == [(1.5, 30, 25), (3.0, 75, 35)]
    # too few trials anywhere: one group of everything
    assert [(e.sum(), u.sum()) for _, e, u in duration_groups(enrolled[:10], strangers[:10])] == [(10, 10)]


def test_the_lead_over_the_second_speaker_tells_strangers_apart():
    from speakerid.scoring import Scoring

    scoring = Scoring(Fusion.single("e"), None, None, "calibrated", {}, gap=1.0)
    best, score = scoring.identification(np.array([[0.8, 0.5, 0.2], [0.7, 0.69, 0.1]]))
    assert best.tolist() == [0, 0] and score == pytest.approx([0.8 + 0.3, 0.7 + 0.01])
    # one speaker scored (the others left out): no lead to weigh
    assert scoring.identification(np.array([[0.6, -np.inf]]))[1] == pytest.approx([0.6])

    # strangers that sit between two enrolled voices score as high as enrolled voices, but lead by little
    rng = np.random.default_rng(1)
    speakers = 10
    truth = np.repeat(np.arange(speakers), 20)
    enrolled = rng.normal(0.3, 0.05, (len(truth), speakers))
    enrolled[np.arange(len(truth)), truth] = rng.normal(0.75, 0.08, len(truth))
    strangers = rng.normal(0.3, 0.05, (200, speakers))
    pair = rng.integers(0, speakers - 1, 200)
    level = rng.normal(0.72, 0.08, 200)
    strangers[np.arange(200), pair] = level
    strangers[np.arange(200), pair + 1] = level - np.abs(rng.normal(0, 0.03, 200))
    seconds_e, seconds_u = np.full(len(truth), 4.0), np.full(200, 4.0)
    trials = Trials(["e"], [str(i) for i in range(speakers)], enrolled[..., None], truth, strangers[..., None],
                    seconds_e, seconds_u)
    fitted, report = fit_scoring(trials)
    assert fitted.gap == LEAD_WEIGHT and report["gap"] == fitted.gap
    plain, plain_report = fit_scoring(trials, gap=0.0)
    # the lead tells them apart: the balanced accuracy rises well above what the best score alone reaches
    balanced = lambda r: min(r["named_right"], r["strangers_rejected"])
    assert balanced(report) > 0.8 and balanced(report) > balanced(plain_report) + 0.05

    # diarization names clusters by the best score alone, at thresholds fitted for it: they sit
    # lower than those for the best score plus its lead, and survive the registry's JSON
    clusters = Scoring.from_dict(json.loads(json.dumps(fitted.to_dict()))).for_clusters()
    assert clusters.gap == 0 and clusters.identify == fitted.cluster and clusters.fusion == fitted.fusion
    assert clusters.decision("identify", seconds=4.0).value < fitted.decision("identify", seconds=4.0).value
    assert plain.cluster is None and plain.for_clusters() is plain
    assert clusters.decision("identify", seconds=4.0).value == pytest.approx(plain.decision("identify", seconds=4.0).value)


def test_thresholds_stay_flat_where_only_one_side_was_measured():
    # enrolled trials of 1.5-15 s; strangers of 1.5-15 s and, beyond, long recordings of 33 s that
    # score high: the line must not be drawn out to 33 s on the strangers alone
    rng = np.random.default_rng(2)
    speakers, n = 8, 160
    truth = rng.integers(0, speakers, n)
    seconds_e = np.exp(rng.uniform(np.log(1.5), np.log(15), n))
    enrolled = rng.normal(0.4, 0.05, (n, speakers))
    enrolled[np.arange(n), truth] = 0.6 + 0.08 * np.log(seconds_e) + rng.normal(0, 0.03, n)
    seconds_u = np.concatenate([np.exp(rng.uniform(np.log(1.5), np.log(15), 120)), np.full(40, 33.0)])
    strangers = rng.normal(0.4, 0.05, (160, speakers))
    strangers[:, 0] = 0.5 + 0.05 * np.log(seconds_u) + rng.normal(0, 0.03, 160)
    fitted, _ = fit_scoring(Trials(["e"], [str(i) for i in range(speakers)], enrolled[..., None], truth,
                                   strangers[..., None], seconds_e, seconds_u), gap=0.0)
    (low, _), (high, _) = fitted.identify
    assert high <= 15.0 and low >= 1.5
    assert fitted.decision("identify", seconds=33).value == fitted.decision("identify", seconds=high).value


def test_decisions_follow_the_length_of_the_audio():
    from speakerid.scoring import Scoring

    scoring = Scoring(Fusion.single("e"), [(1.5, 0.7), (6.0, 0.8)], [(1.5, 0.6), (6.0, 0.7)], "calibrated", {})
    assert scoring.decision("identify", seconds=1.5).value == pytest.approx(0.7)
    assert scoring.decision("identify", seconds=3.0).value == pytest.approx(0.75)  # halfway in log(seconds)
    assert scoring.decision("identify", seconds=0.5).value == pytest.approx(0.7)  # flat beyond the points
    assert scoring.decision("identify", seconds=60).value == pytest.approx(0.8)
    assert scoring.decision("verify", seconds=6).value == pytest.approx(0.7)
    assert scoring.decision("identify", given=0.5, seconds=3).value == 0.5
    assert Scoring.from_dict(scoring.to_dict()) == scoring


def test_calibrate_without_strangers_or_new_recordings_cross_validates_and_simulates_strangers(enrolled):
    path, _, speakers = enrolled
    # a folder of enrolled speakers' files that are all enrolled already: nothing held out, no stranger
    already = link_speakers(path.parent / "enroll", path.parent / "only-enrolled", speakers[:2])
    result = calibrate(path, already, store=False, progress=False)
    report = result.report
    assert result.enrolled_side == "cross-validation" and report["simulated_stranger_trials"] == report["stranger_trials"]
    # each of the 16 enrolled takes (and its 4 clips) is held out once, and doubles as a stranger to the other speakers
    assert report["enrolled_trials"] == report["stranger_trials"] == 16 * 5 - len(result.failed)
    assert report["named_right"] >= 0.7 and report["strangers_rejected"] >= 0.7


def test_calibrate_refuses_what_it_cannot_use(enrolled, short_takes, tmp_path):
    path, strangers, speakers = enrolled
    with pytest.raises(CorpusError, match="false-accept rate"):
        calibrate(path, strangers, far=1.5, progress=False)
    one = VoiceRegistry(tmp_path / "one.db")
    one.enroll_folder(link_speakers(short_takes, tmp_path / "one", speakers[:1]), progress=False)
    one.close()
    with pytest.raises(CorpusError, match="at least 2"):
        calibrate(tmp_path / "one.db", strangers, progress=False)
    from speakerid.errors import RegistryError

    with pytest.raises(RegistryError, match="no such registry"):
        calibrate(tmp_path / "missing.db", strangers, progress=False)
    assert not (tmp_path / "missing.db").exists()


def test_calibrate_reports_an_unusable_stranger_file_once_and_goes_on(enrolled, tmp_path):
    path, strangers, _ = enrolled
    odd = tmp_path / "strangers"
    shutil.copytree(strangers, odd, symlinks=True)
    (odd / "odd").mkdir()
    write_wav(odd / "odd" / "silence.wav", np.zeros(8 * 16000, dtype=np.float32), 16000)  # 8 s: clips of 1.5, 3 and 6 s
    (odd / "odd" / "broken.wav").write_bytes(b"RIFF not a wave")
    result = calibrate(path, odd, store=False, progress=False)
    reasons = dict(result.failed)
    assert "speech" in reasons[str(odd / "odd" / "silence.wav")] and "readable" in reasons[str(odd / "odd" / "broken.wav")]
    assert not [f for f, _ in result.failed if f.startswith(str(odd / "odd" / "silence.wav") + " [")]  # not its clips too
    assert result.report["stranger_trials"] > result.report["simulated_stranger_trials"]  # the real strangers were scored
