"""The grounder role against the transformers OWLv2 reference, on the tiny random-weight checkpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlm_engine.grounding import GrounderRole, boxes_nms, grounding_boxes_to_original
from vlm_engine.tiny_grounder import tiny_grounder_write
from vlm_engine.types import Grounding

PHRASES = ["a cat", "a photo of a dog", "a knife"]


@pytest.fixture(scope="session")
def tiny_grounder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_grounder_write(tmp_path_factory.mktemp("tiny-grounder"))


@pytest.fixture(scope="module")
def grounder(tiny_grounder_dir: Path) -> GrounderRole:
    return GrounderRole.load(str(tiny_grounder_dir), device="cpu", dtype="float32", local_files_only=True)


def _noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _visible(box: list[float], width: int, height: int) -> tuple[float, ...] | None:
    """The box clipped to the image, or None when nothing of it is left (it lay in the padding)."""
    x0, y0, x1, y1 = np.clip(box, 0, [width, height, width, height]).tolist()
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _reference_groundings(directory: Path, image: Image.Image, phrases: list[str], threshold: float) -> list[Any]:
    """transformers' documented OWLv2 path, one phrase per forward as its pipeline does."""
    import torch
    from transformers import AutoProcessor, Owlv2ForObjectDetection

    model = Owlv2ForObjectDetection.from_pretrained(directory).eval()
    processor = AutoProcessor.from_pretrained(directory)
    found = []
    for phrase in phrases:
        inputs = processor(text=[[phrase]], images=image, return_tensors="pt")
        with torch.inference_mode():
            outputs = model(**inputs)
        result = processor.post_process_grounded_object_detection(
            outputs, threshold=threshold, target_sizes=[(image.height, image.width)], text_labels=[[phrase]]
        )[0]
        for box, score in zip(result["boxes"].tolist(), result["scores"].tolist()):
            visible = _visible(box, image.width, image.height)
            if visible is not None:
                found.append((phrase, visible, score))
    return sorted(found, key=lambda item: -item[2])


def _assert_same(ours: list[Grounding], reference: list[Any], *, box_tolerance: float) -> None:
    assert [grounding.phrase for grounding in ours] == [phrase for phrase, _, _ in reference]
    for grounding, (_, box, score) in zip(ours, reference):
        assert grounding.score == pytest.approx(score, abs=1e-5)
        assert grounding.box == pytest.approx(box, abs=box_tolerance)


@pytest.mark.parametrize("size", [(90, 40), (40, 90)])
def test_ground_matches_the_transformers_reference(
    grounder: GrounderRole, tiny_grounder_dir: Path, size: tuple[int, int]
) -> None:
    image = _noise_image(*size)
    ours = grounder.ground([image], [PHRASES], threshold=0.3, nms_iou=1.0, max_boxes_per_phrase=1000)[0]
    reference = _reference_groundings(tiny_grounder_dir, image, PHRASES, 0.3)
    assert len(ours) >= 3  # the comparison is not vacuous
    # Ours are rounded to 0.1 px; the reference is not.
    _assert_same(ours, reference, box_tolerance=0.05 + 1e-3)


def test_ground_matches_the_pipeline(grounder: GrounderRole, tiny_grounder_dir: Path) -> None:
    from transformers import pipeline

    image = _noise_image(90, 40)
    detector = pipeline("zero-shot-object-detection", model=str(tiny_grounder_dir))
    detections = detector(image, candidate_labels=PHRASES, threshold=0.3)
    # The pipeline truncates its boxes to whole pixels and does not clip them to the image.
    reference = [
        (detection["label"], visible, detection["score"])
        for detection in detections
        if (visible := _visible(list(detection["box"].values()), 90, 40)) is not None
    ]
    ours = grounder.ground([image], [PHRASES], threshold=0.3, nms_iou=1.0, max_boxes_per_phrase=1000)[0]
    assert len(ours) >= 3
    _assert_same(ours, [(p, tuple(v + 0.5 for v in box), s) for p, box, s in reference], box_tolerance=0.55)


def test_transformers_post_processing_already_scales_by_the_padded_side(tiny_grounder_dir: Path) -> None:
    """Pins transformers 5's behaviour: OWLv2 post-processing multiplies by max(h, w), not (w, h)."""
    import torch
    from transformers import AutoProcessor
    from transformers.utils import ModelOutput

    processor = AutoProcessor.from_pretrained(tiny_grounder_dir)
    outputs = ModelOutput(logits=torch.zeros(1, 1, 1), pred_boxes=torch.tensor([[[0.5, 0.25, 1.0, 0.5]]]))
    result = processor.image_processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(40, 90)])
    assert result[0]["boxes"].tolist() == [[0.0, 0.0, 90.0, 45.0]]  # unclipped: 45 > the height, 40
    ours = grounding_boxes_to_original(np.array([[0.0, 0.0, 1.0, 0.5]]), width=90, height=40)
    assert ours.tolist() == [[0.0, 0.0, 90.0, 40.0]]


@pytest.mark.parametrize(
    ("box", "width", "height", "expected"),
    [
        # landscape 200x100: the padded square has side 200
        ((0.1, 0.2, 0.5, 0.4), 200, 100, (20.0, 40.0, 100.0, 80.0)),
        ((0.0, 0.0, 1.0, 1.0), 200, 100, (0.0, 0.0, 200.0, 100.0)),
        ((0.1, 0.2, 0.5, 0.6), 200, 100, (20.0, 40.0, 100.0, 100.0)),
        ((-0.1, -0.05, 0.2, 0.3), 200, 100, (0.0, 0.0, 40.0, 60.0)),
        # portrait 100x200: side 200 again, the padding is on the right
        ((0.25, 0.5, 0.75, 0.9), 100, 200, (50.0, 100.0, 100.0, 180.0)),
        ((0.125, 0.0, 0.25, 1.25), 100, 200, (25.0, 0.0, 50.0, 200.0)),
        # square: no padding
        ((0.5, 0.5, 0.75, 1.0), 64, 64, (32.0, 32.0, 48.0, 64.0)),
    ],
)
def test_grounding_boxes_to_original(
    box: tuple[float, ...], width: int, height: int, expected: tuple[float, ...]
) -> None:
    mapped = grounding_boxes_to_original(np.array([box]), width=width, height=height)
    assert mapped.tolist() == [pytest.approx(list(expected), abs=1e-9)]


A = (0.0, 0.0, 10.0, 10.0)


@pytest.mark.parametrize(
    ("boxes", "scores", "iou_threshold", "kept"),
    [
        ([A, (1.0, 1.0, 11.0, 11.0)], [0.9, 0.8], 0.3, [0]),  # IoU 81/119: the better one stays
        ([A, (1.0, 1.0, 11.0, 11.0)], [0.5, 0.8], 0.3, [1]),
        ([A, (20.0, 20.0, 30.0, 30.0)], [0.5, 0.8], 0.3, [1, 0]),  # disjoint: both, best first
        ([A, (0.0, 0.0, 10.0, 5.0)], [0.9, 0.8], 0.5, [0, 1]),  # IoU exactly 0.5 is not above 0.5
        ([A, (0.0, 0.0, 10.0, 5.0)], [0.9, 0.8], 0.49, [0]),
        # the middle box is suppressed, so it suppresses nothing itself
        ([A, (4.0, 0.0, 14.0, 10.0), (8.0, 0.0, 18.0, 10.0)], [0.9, 0.8, 0.7], 0.3, [0, 2]),
        ([A, (1.0, 1.0, 11.0, 11.0)], [0.9, 0.8], 1.0, [0, 1]),  # 1.0 disables suppression
        ([A, A], [0.9, 0.8], 0.99, [0]),
    ],
)
def test_boxes_nms(boxes: list[tuple[float, ...]], scores: list[float], iou_threshold: float, kept: list[int]) -> None:
    assert boxes_nms(np.array(boxes), np.array(scores), iou_threshold=iou_threshold) == kept


def test_boxes_nms_of_nothing() -> None:
    assert boxes_nms(np.zeros((0, 4)), np.zeros(0), iou_threshold=0.3) == []


def test_nms_suppresses_within_a_phrase_never_across_phrases(grounder: GrounderRole) -> None:
    image = _noise_image(90, 40)
    every = grounder.ground([image], [PHRASES], threshold=0.0, nms_iou=1.0, max_boxes_per_phrase=1000)[0]
    suppressed = grounder.ground([image], [PHRASES], threshold=0.0, nms_iou=0.1, max_boxes_per_phrase=1000)[0]
    for phrase in PHRASES:
        candidates = [grounding for grounding in every if grounding.phrase == phrase]
        kept = boxes_nms(
            np.array([g.box for g in candidates]), np.array([g.score for g in candidates]), iou_threshold=0.1
        )
        assert [g for g in suppressed if g.phrase == phrase] == [candidates[index] for index in kept]
        assert len(kept) < len(candidates)
    # The random model puts every phrase's best box in the same place: none suppresses another's.
    assert [g.box for g in suppressed[:3]] == [suppressed[0].box] * 3
    assert {g.phrase for g in suppressed[:3]} == set(PHRASES)


def test_ground_caps_boxes_per_phrase(grounder: GrounderRole) -> None:
    image = _noise_image(90, 40)
    every = grounder.ground([image], [PHRASES], threshold=0.0, nms_iou=1.0, max_boxes_per_phrase=1000)[0]
    capped = grounder.ground([image], [PHRASES], threshold=0.0, nms_iou=1.0, max_boxes_per_phrase=2)[0]
    expected = [g for phrase in PHRASES for g in [g for g in every if g.phrase == phrase][:2]]
    assert capped == sorted(expected, key=lambda g: -g.score)


def test_ground_keeps_each_images_own_phrases(grounder: GrounderRole) -> None:
    images = [_noise_image(90, 40, seed=1), _noise_image(40, 90, seed=2), _noise_image(64, 64, seed=3)]
    results = grounder.ground(images, [["a"], ["b", "a"], []], threshold=0.0)
    assert {g.phrase for g in results[0]} == {"a"}
    assert {g.phrase for g in results[1]} == {"a", "b"}
    assert results[2] == []


def test_ground_in_a_batch_equals_one_image_at_a_time(grounder: GrounderRole) -> None:
    images = [_noise_image(90, 40, seed=1), _noise_image(40, 90, seed=2)]
    phrases = [["a cat"], ["a knife", "a cat"]]
    batched = grounder.ground(images, phrases, threshold=0.2, nms_iou=0.5)
    for image, wanted, together in zip(images, phrases, batched):
        alone = grounder.ground([image], [wanted], threshold=0.2, nms_iou=0.5)[0]
        assert [(g.phrase, g.box) for g in together] == [(g.phrase, g.box) for g in alone]
        assert [g.score for g in together] == pytest.approx([g.score for g in alone], abs=1e-5)


def test_ground_returns_plain_values_best_first(grounder: GrounderRole) -> None:
    results = grounder.ground([_noise_image(90, 40)], [PHRASES], threshold=0.0)[0]
    assert results
    assert [g.score for g in results] == sorted((g.score for g in results), reverse=True)
    for grounding in results:
        assert type(grounding.score) is float
        assert all(type(value) is float and value == round(value, 1) for value in grounding.box)
        x0, y0, x1, y1 = grounding.box
        assert 0.0 <= x0 < x1 <= 90.0 and 0.0 <= y0 < y1 <= 40.0


@pytest.fixture
def passes(tiny_grounder_dir: Path) -> Iterator[tuple[GrounderRole, dict[str, list[tuple[int, ...]]]]]:
    """A fresh grounder (empty phrase cache) whose vision and text towers record each input's shape."""
    role = GrounderRole.load(str(tiny_grounder_dir), device="cpu", dtype="float32", local_files_only=True)
    seen: dict[str, list[tuple[int, ...]]] = {"vision": [], "text": []}
    towers = {"vision": role.model.owlv2.vision_model, "text": role.model.owlv2.text_model}
    handles = [
        tower.register_forward_hook(
            lambda _module, args, kwargs, _out, name=name: seen[name].append(
                tuple((args[0] if args else next(iter(kwargs.values()))).shape)
            ),
            with_kwargs=True,
        )
        for name, tower in towers.items()
    ]
    yield role, seen
    for handle in handles:
        handle.remove()


def test_ground_costs_one_image_pass_and_one_text_pass_per_batch(passes: Any) -> None:
    role, seen = passes
    images = [_noise_image(90, 40, seed=1), _noise_image(40, 90, seed=2), _noise_image(64, 64), _noise_image(30, 20)]
    phrases = [["a cat"], ["a knife", "a cat"], ["a photo of a dog", "a"], []]
    role.ground(images, phrases, threshold=0.0)
    assert seen == {"vision": [(4, 3, 64, 64)], "text": [(4, 16)]}

    role.ground(images[:2], [["a"], ["a knife"]], threshold=0.0)  # every phrase cached: no text pass
    assert seen == {"vision": [(4, 3, 64, 64), (2, 3, 64, 64)], "text": [(4, 16)]}

    role.ground(images[:1], [["a cat", "blood"]], threshold=0.0)  # only the new phrase is encoded
    assert seen["text"] == [(4, 16), (1, 16)]


def test_ground_without_phrases_runs_nothing(passes: Any) -> None:
    role, seen = passes
    assert role.ground([], []) == []
    assert role.ground([_noise_image(20, 10)], [[]]) == [[]]
    assert seen == {"vision": [], "text": []}


def test_ground_rejects_mismatched_lengths(grounder: GrounderRole) -> None:
    with pytest.raises(ValueError, match="got 1 images but 2 phrase lists"):
        grounder.ground([_noise_image(20, 10)], [["a"], ["b"]])


def test_version_names_the_checkpoint_and_its_config(grounder: GrounderRole, tiny_grounder_dir: Path) -> None:
    sha = hashlib.sha256((tiny_grounder_dir / "config.json").read_bytes()).hexdigest()[:12]
    assert grounder.version == f"owlv2:owlv2@{sha}"


def test_tiny_grounder_loads_through_the_auto_classes(tiny_grounder_dir: Path) -> None:
    from transformers import AutoProcessor, Owlv2ForObjectDetection

    processor = AutoProcessor.from_pretrained(tiny_grounder_dir)
    model = Owlv2ForObjectDetection.from_pretrained(tiny_grounder_dir)
    assert type(processor).__name__ == "Owlv2Processor"
    assert type(processor.image_processor).__name__ == "Owlv2ImageProcessorPil"
    assert type(processor.tokenizer).__name__ == "CLIPTokenizer"
    assert (model.config.vision_config.image_size, model.config.vision_config.patch_size) == (64, 16)
    # OWLv2 treats a query whose first id is 0 as padding: the pad token must be id 0, never a real query's start.
    assert processor.tokenizer.pad_token_id == 0
    assert processor.tokenizer(["a cat"])["input_ids"][0][0] != 0


def test_tiny_grounder_write_is_deterministic_and_idempotent(tmp_path: Path, tiny_grounder_dir: Path) -> None:
    written = tiny_grounder_write(tmp_path)
    assert written == tmp_path / "owlv2"
    weights = (written / "model.safetensors").read_bytes()
    assert weights == (tiny_grounder_dir / "model.safetensors").read_bytes()
    before = {path.name: path.stat().st_mtime_ns for path in written.iterdir()}
    assert tiny_grounder_write(tmp_path) == written
    assert {path.name: path.stat().st_mtime_ns for path in written.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["owlv2"]  # no staging left behind


def test_phrase_cache_keeps_the_newest(passes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    role, seen = passes
    monkeypatch.setattr("vlm_engine.grounding.QUERY_CACHE_SIZE", 2)
    image = _noise_image(20, 10)
    role.ground([image], [["a", "b", "c"]])  # more phrases than the cache holds, all still scored
    assert list(role._query_embeds) == ["b", "c"]
    role.ground([image], [["c", "a"]])
    assert seen["text"] == [(3, 16), (1, 16)]
    assert list(role._query_embeds) == ["c", "a"]
