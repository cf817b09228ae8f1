"""The cascade's look-closer step: grounding and generation for the posts that need a closer look."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from PIL import Image

from vlm_engine.generation import PROMPTS, Generator, rationale_prompt
from vlm_engine.grounding import GrounderRole
from vlm_engine.timing import stage_timed
from vlm_engine.types import Answer, Grounding, Policy, PostInput

# The standing prompts every looked-at post gets, before its policy questions and rationale.
_STANDING_PROMPTS = (PROMPTS["caption"], PROMPTS["ocr"])


@dataclass(frozen=True)
class Findings:
    """What the grounder and the generator found in one post; empty for a post not looked at."""

    groundings: tuple[Grounding, ...] = ()
    answers: tuple[Answer, ...] = ()
    caption: str | None = None
    ocr_text: str | None = None
    rationale: str | None = None


NO_FINDINGS = Findings()


def classifier_text(post_text: str, ocr_text: str | None) -> str:
    """The text CLIP's text tower classifies: the post's own words, then the words read from its image.

    Memes carry their message in the pixels, where the image tower barely reads it.
    """
    return " ".join(part for part in (post_text.strip(), (ocr_text or "").strip()) if part)


def policy_phrases(policy: Policy) -> list[str]:
    """Every category's grounding phrases, in policy order, each once."""
    return list(dict.fromkeys(phrase for category in policy.categories for phrase in category.phrases))


def policy_questions(policy: Policy) -> list[str]:
    """Every category's questions, in policy order, each once."""
    return list(dict.fromkeys(question for category in policy.categories for question in category.questions))


class LookCloser:
    """Runs the grounder once and the generator once over the posts chosen for a closer look.

    Either role may be None (not configured); its findings then stay empty.
    """

    def __init__(
        self,
        grounder: GrounderRole | None,
        generator: Generator | None,
        *,
        threshold: float,
        max_new_tokens: int,
        read_text: bool = True,
    ) -> None:
        self.grounder = grounder
        self.generator = generator
        # False when another reader (OCR) reads every image: the generator is then not asked to.
        self.standing_prompts = _STANDING_PROMPTS if read_text else _STANDING_PROMPTS[:1]
        self.threshold = threshold
        self.max_new_tokens = max_new_tokens

    def findings(
        self,
        posts: Sequence[PostInput],
        images: Sequence[Image.Image],
        policy: Policy,
        timings: dict[str, float],
    ) -> list[Findings]:
        """One Findings per post (`images[i]` is the decoded image of `posts[i]`), in order."""
        if not posts:
            return []
        generated = self._generate(posts, images, policy, timings)
        groundings = self._ground(images, policy, timings)
        return [replace(found, groundings=boxes) for found, boxes in zip(generated, groundings)]

    def _ground(
        self, images: Sequence[Image.Image], policy: Policy, timings: dict[str, float]
    ) -> list[tuple[Grounding, ...]]:
        phrases = policy_phrases(policy)
        if self.grounder is None or not phrases:
            return [() for _ in images]
        with stage_timed(timings, "ground"):
            found = self.grounder.ground(images, [phrases] * len(images), threshold=self.threshold)
        return [tuple(groundings) for groundings in found]

    def _generate(
        self, posts: Sequence[PostInput], images: Sequence[Image.Image], policy: Policy, timings: dict[str, float]
    ) -> list[Findings]:
        if self.generator is None:
            return [NO_FINDINGS for _ in posts]
        if not self.generator.instructed:
            return self._caption_and_answer(self.generator, images, policy_questions(policy), timings)
        questions = policy_questions(policy)
        names = [category.name for category in policy.categories]
        prompts = [[*self.standing_prompts, *questions, rationale_prompt(names, post.text)] for post in posts]
        stride = len(prompts[0])
        with stage_timed(timings, "generate"):
            outputs = self.generator.generate(
                [image for image in images for _ in range(stride)],
                [prompt for post_prompts in prompts for prompt in post_prompts],
                max_new_tokens=self.max_new_tokens,
            )
        reads = len(self.standing_prompts) > 1
        return [_findings_parse(outputs[start : start + stride], questions, reads=reads)
                for start in range(0, len(outputs), stride)]

    def _caption_and_answer(self, generator: Generator, images: Sequence[Image.Image], questions: list[str],
                            timings: dict[str, float]) -> list[Findings]:
        """A family that follows no instructions (BLIP, GIT…): a caption, and the policy questions
        answered if it answers questions; it reads no text and argues no rationale."""
        asked = questions if generator.answers_questions else []
        with stage_timed(timings, "generate"):
            captions = generator.caption(images, [None] * len(images), max_new_tokens=self.max_new_tokens)
            answers = generator.answer([image for image in images for _ in asked], asked * len(images),
                                       max_new_tokens=self.max_new_tokens) if asked else []
        per_post = len(asked)
        return [Findings(caption=caption.strip() or None,
                         answers=tuple(Answer(question=question, answer=answer.strip()) for question, answer
                                       in zip(asked, answers[row * per_post:(row + 1) * per_post])))
                for row, caption in enumerate(captions)]


def _findings_parse(outputs: Sequence[str], questions: Sequence[str], *, reads: bool) -> Findings:
    """One post's generated texts, in the order the prompts were built, as Findings."""
    stripped = [output.strip() for output in outputs]
    if not reads:
        stripped.insert(1, "")  # no OCR prompt was sent
    caption, ocr_text, *answers, rationale = stripped
    return Findings(
        answers=tuple(Answer(question=question, answer=answer) for question, answer in zip(questions, answers)),
        caption=caption or None,
        ocr_text=ocr_text or None,
        rationale=rationale or None,
    )
