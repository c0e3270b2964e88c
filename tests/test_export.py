"""export_images: the same pixels as the model's picture, in parallel, resumable, never overwriting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from speakerid.corpus import Corpus
from speakerid.errors import CorpusError
from speakerid.export import export_images
from speakerid.features import FeatureConfig, MfccImage


def model_pixels(corpus: Corpus, indices) -> np.ndarray:
    """The pictures as uint8 (N, H, W, 3), rounded exactly as export-images always has."""
    waves = torch.from_numpy(np.stack([corpus.chunk_audio(i) for i in indices]))
    with torch.no_grad():
        return (MfccImage(FeatureConfig(), size=300)(waves).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def exported(corpus: Corpus, out, ext: str) -> tuple[list, np.ndarray]:
    """(chunk indices, pixels) of the test split's exported files, in chunk order."""
    indices = list(corpus.split_indices("test"))
    stems = {}  # file -> chunk index: recordings' chunks are numbered in order
    for i in indices:
        r = corpus.chunk_recording[i]
        speaker, _, rest = corpus.recording_ids[r].partition("/")
        k = sum(1 for j in indices if j < i and corpus.chunk_recording[j] == r)
        stems[out / "test" / speaker / f"{rest.rsplit('.', 1)[0]}_{k:04d}.{ext}"] = i
    pictures = []
    for path in stems:
        with Image.open(path) as image:
            pictures.append(np.asarray(image.convert("RGB")))
    return list(stems.values()), np.stack(pictures)


@pytest.fixture(scope="module")
def corpus(small_corpus) -> Corpus:
    return Corpus.open(small_corpus)


def test_png_holds_the_same_pixels_as_before(corpus, tmp_path):
    written = export_images(corpus, tmp_path / "png", image_format="png", split="test", workers=2, batch_size=3,
                            progress=False)
    indices, pixels = exported(corpus, tmp_path / "png", "png")
    assert written == len(indices) == len(corpus.split_indices("test"))
    # Batches of 3 and the reference's one batch round a few values on either side of .5 (float sums
    # in a different order): at most one level apart, on a handful of the 14 million values.
    difference = np.abs(pixels.astype(int) - model_pixels(corpus, indices).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-4


def test_jpg_is_the_default_and_close_to_the_pixels(corpus, tmp_path):
    threads = torch.get_num_threads()
    export_images(corpus, tmp_path / "jpg", split="test", progress=False)
    assert torch.get_num_threads() == threads  # restored
    indices, pixels = exported(corpus, tmp_path / "jpg", "jpg")
    difference = np.abs(pixels.astype(int) - model_pixels(corpus, indices).astype(int))
    assert difference.mean() < 2.0 and pixels.std() > 10


def test_an_interrupted_export_resumes_and_other_files_are_refused(corpus, tmp_path):
    out = tmp_path / "img"
    total = export_images(corpus, out, split="test", progress=False)
    files = sorted(out.rglob("*.jpg"))
    files[0].unlink()
    files[1].with_name(files[1].name + ".tmp").write_bytes(b"torn")  # left by a killed export
    before = files[2].stat().st_mtime_ns
    assert export_images(corpus, out, split="test", workers=1, progress=False) == 1 < total
    assert files[0].exists() and files[2].stat().st_mtime_ns == before  # never rewritten
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="would not write"):
        export_images(corpus, out, split="test", progress=False)
    with pytest.raises(CorpusError, match="'jpg' or 'png'"):
        export_images(corpus, tmp_path / "other", image_format="gif", progress=False)
