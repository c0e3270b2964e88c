"""The DER and named-error scorer: hand-worked cases, agreement with pyannote.metrics, RTTM in and out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from speakerid.der import Turn, diarization_error, named_error, read_rttm, rttm_lines, write_rttm
from speakerid.errors import SpeakerIdError


def test_hand_worked_errors_with_overlap():
    reference = [Turn(0, 10, "ann"), Turn(8, 12, "bob"), Turn(15, 20, "cy")]  # 2 s of overlap: 19 s of speech
    hypothesis = [Turn(0, 9, "x"), Turn(9, 12, "y"), Turn(14, 20, "x")]
    result = diarization_error(reference, hypothesis)
    assert result.reference == pytest.approx(19)
    assert result.mapping == {"x": "ann", "y": "bob"}
    assert result.missed == pytest.approx(2)  # 8-10: two speak, one label
    assert result.false_alarm == pytest.approx(1)  # 14-15: nobody speaks
    assert result.confusion == pytest.approx(5)  # 15-20: x is ann's label, not cy's
    assert result.error == pytest.approx(8 / 19)


def test_collar_leaves_out_the_boundaries():
    reference, hypothesis = [Turn(1, 5, "a")], [Turn(1.2, 5.1, "z")]
    assert diarization_error(reference, hypothesis).error == pytest.approx(0.2 / 4 + 0.1 / 4)
    with_collar = diarization_error(reference, hypothesis, collar=0.25)
    assert with_collar.error == 0 and with_collar.reference == pytest.approx(3.5)


def test_named_error_wants_the_right_names():
    reference = [Turn(0, 5, "ann"), Turn(5, 10, "bob"), Turn(10, 15, "visitor")]
    swapped = [Turn(0, 5, "bob"), Turn(5, 10, "ann"), Turn(10, 15, "unknown-1")]
    assert diarization_error(reference, swapped).error == 0  # anonymous pairing forgives the swap
    named = named_error(reference, swapped)
    assert named.confusion == pytest.approx(10) and named.mapping == {"ann": "ann", "bob": "bob", "unknown-1": "visitor"}
    # an anonymous label on an enrolled speaker is an error: strangers are the only ones it may pair with
    anonymous_ann = [Turn(0, 5, "unknown-1"), Turn(5, 15, "bob")]
    assert named_error(reference, anonymous_ann, enrolled={"ann", "bob"}).confusion == pytest.approx(10)


def _random_turns(rng, labels, per_label):
    turns = []
    for label in labels:  # a speaker never overlaps themself
        t = round(rng.uniform(0, 5), 2)
        for _ in range(per_label):
            end = round(t + rng.uniform(0.2, 6), 2)
            turns.append(Turn(t, end, label))
            t = round(end + rng.uniform(0.1, 8), 2)
    return turns


def test_agrees_with_pyannote_metrics():
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate
    from pyannote.metrics.identification import IdentificationErrorRate

    def annotation(turns):
        out = Annotation()
        for i, t in enumerate(turns):
            out[Segment(t.start, t.end), i] = t.speaker
        return out

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyannote warns that it approximates the UEM, as we do
        for _ in range(10):
            reference = _random_turns(rng, ["ann", "bob", "cy", "dee"], 6)
            hypothesis = _random_turns(rng, ["ann", "bob", "eve", "unknown-1", "unknown-2"], 5)
            for collar in (0.0, 0.25):
                ours = diarization_error(reference, hypothesis, collar)
                theirs = DiarizationErrorRate(collar=2 * collar, skip_overlap=False)(
                    annotation(reference), annotation(hypothesis), detailed=True)
                assert ours.error == pytest.approx(theirs["diarization error rate"], abs=1e-9)
                assert ours.confusion == pytest.approx(theirs["confusion"], abs=1e-9)
                assert ours.missed == pytest.approx(theirs["missed detection"], abs=1e-9)
                named = named_error(reference, hypothesis, {"ann", "bob", "eve"}, collar)
                renamed = [Turn(t.start, t.end, named.mapping.get(t.speaker, t.speaker)) for t in hypothesis]
                identification = IdentificationErrorRate(collar=2 * collar, skip_overlap=False)(
                    annotation(reference), annotation(renamed), detailed=True)
                assert named.error == pytest.approx(identification["identification error rate"], abs=1e-9)


def test_rttm_round_trip_and_errors(tmp_path):
    turns = [Turn(0.5, 2.25, "ann"), Turn(2.0, 3.0, "unknown-1")]
    path = write_rttm(tmp_path / "out.rttm", {"meeting": turns})
    assert rttm_lines(turns, "meeting")[0] == "SPEAKER meeting 1 0.500 1.750 <NA> <NA> ann <NA> <NA>"
    assert read_rttm(path) == {"meeting": turns}
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER meeting 1 zero 1.0 <NA> <NA> ann <NA> <NA>\n")
    with pytest.raises(SpeakerIdError, match="bad.rttm, line 1"):
        read_rttm(bad)
    with pytest.raises(SpeakerIdError, match="cannot read"):
        read_rttm(tmp_path / "missing.rttm")
