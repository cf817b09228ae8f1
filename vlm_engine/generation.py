"""The vision-language generator role: answers, captions and text read from images, in one generate call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from PIL import Image

from vlm_engine.registry import CheckpointRole, role_register
from vlm_engine.tiny_generator import tiny_generator_write

if TYPE_CHECKING:
    import torch

# Instructions for the generator's standing tasks; a VQA question is sent as it is.
PROMPTS = {
    "caption": "Describe this image in one sentence.",
    "detailed_caption": "Describe this image in detail.",
    "ocr": "Read all the text written in this image. Answer with the text only.",
}


def conditional_caption_prompt(prompt: str) -> str:
    """A caption steered by a prefix such as "a photo of", as BLIP's conditional captioning does.

    Chat models do not continue a bare prefix, so the prefix becomes an instruction.
    """
    return f'Describe this image in one sentence that starts with "{prompt.strip()}".'


# Enough of a post's text for the rationale to weigh it, without crowding out the image tokens.
RATIONALE_TEXT_CHARS = 300


def rationale_prompt(category_names: Sequence[str], post_text: str) -> str:
    """Ask for one paragraph on whether the post (this image plus its text) breaks any of the rules."""
    text = post_text.strip()
    if len(text) > RATIONALE_TEXT_CHARS:
        text = text[:RATIONALE_TEXT_CHARS].rstrip() + "…"
    quoted = f'The post\'s text: "{text}".' if text else "The post has no text."
    return (
        f"{quoted} In one paragraph, say whether this post breaks any of these rules, "
        f"and why: {'; '.join(category_names)}."
    )


class Generator(Protocol):
    """What the engine asks of any generator family: captions, answers, and (if `instructed`) instructions.

    `answers_questions` False (a pure captioner): `answer` raises
    ``vlm_engine.generators.QuestionsUnanswered``. `instructed` False: the family follows no
    instruction (no reading, no rationale); `generate` then answers its prompts as questions.
    """

    answers_questions: ClassVar[bool]
    instructed: ClassVar[bool]
    version: str
    real: bool

    @property
    def family(self) -> str: ...

    def caption(self, images: Sequence[Image.Image], prefixes: Sequence[str | None], *,
                max_new_tokens: int = 32) -> list[str]: ...

    def answer(self, images: Sequence[Image.Image], questions: Sequence[str], *,
               max_new_tokens: int = 32) -> list[str]: ...

    def generate(self, images: Sequence[Image.Image], prompts: Sequence[str], *,
                 max_new_tokens: int = 32) -> list[str]: ...


# Idefics3 is SmolVLM's architecture; "smolvlm" is the model_type of SmolVLM2 checkpoints.
@role_register("generator", "idefics3", "smolvlm", auto_class="AutoModelForImageTextToText", version_prefix="vlm",
               tiny=tiny_generator_write)
class GeneratorRole(CheckpointRole):
    """A loaded image-text-to-text checkpoint; each call is preprocess → generate (device) → decode (str)."""

    answers_questions: ClassVar[bool] = True
    instructed: ClassVar[bool] = True

    def _setup(self) -> None:
        # Decoder-only generation appends after the prompt, so prompts must end flush right.
        self.processor.tokenizer.padding_side = "left"

    @property
    def family(self) -> str:
        return self.version_prefix

    def caption(self, images: Sequence[Image.Image], prefixes: Sequence[str | None], *,
                max_new_tokens: int = 32) -> list[str]:
        """Captions asked by instruction; a prefix becomes `conditional_caption_prompt`."""
        prompts = [PROMPTS["caption"] if prefix is None else conditional_caption_prompt(prefix) for prefix in prefixes]
        return self.generate(images, prompts, max_new_tokens=max_new_tokens)

    def answer(self, images: Sequence[Image.Image], questions: Sequence[str], *,
               max_new_tokens: int = 32) -> list[str]:
        """The questions sent as they are (`generate`)."""
        return self.generate(images, questions, max_new_tokens=max_new_tokens)

    def generate(
        self, images: Sequence[Image.Image], prompts: Sequence[str], *, max_new_tokens: int = 32
    ) -> list[str]:
        """Greedy answers, one per (image, prompt) pair, from ONE `generate` call for the whole batch.

        Args:
            images: `images[i]` is the image `prompts[i]` asks about; repeat an image for several prompts.
            prompts: a question or instruction per image (see `PROMPTS`).
            max_new_tokens: the longest answer, in tokens.

        Returns:
            The answers, without the prompt or special tokens, whitespace stripped.

        Raises:
            ValueError: `images` and `prompts` differ in length.
        """
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not prompts:
            return []
        inputs = self._preprocess(images, prompts)
        new_tokens = self._forward(inputs, max_new_tokens, _first_of_same_image(images))
        return self._postprocess(new_tokens)

    def _preprocess(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> Any:
        texts = [self._chat_text(prompt) for prompt in prompts]
        # One image per conversation: a nested list keeps image i with text i.
        return self.processor(
            text=texts, images=[[image] for image in images], padding=True, return_tensors="pt"
        )

    def _chat_text(self, prompt: str) -> str:
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text: str = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        return text

    def _forward(self, inputs: Any, max_new_tokens: int, sources: list[int]) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            # BatchFeature.to casts only the floating tensors (the pixels) to the model's dtype.
            inputs = dict(inputs.to(device=self.device, dtype=self.model.dtype))
            if self._shares_image_features(sources):
                inputs["mm_encoder_outputs"] = {"image": self._image_features(inputs, sources)}
            output: torch.Tensor = self.model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
            # With left padding every prompt ends at the same column; the rest is new.
            return output[:, inputs["input_ids"].shape[1] :].cpu()

    def _shares_image_features(self, sources: list[int]) -> bool:
        supports = getattr(self.model, "_supports_mm_encoder_outputs", lambda: False)()
        return bool(supports) and len(set(sources)) < len(sources)

    def _image_features(self, inputs: dict[str, Any], sources: list[int]) -> Any:
        """Encode each distinct image once; every prompt about it reuses its features.

        The engine asks several questions of one image (caption, text, policy questions,
        rationale): without this the vision tower would run once per prompt.
        """
        unique = sorted(set(sources))
        pixels = inputs.pop("pixel_values")[unique]
        mask = inputs.pop("pixel_attention_mask", None)
        features = self.model.base_model.get_image_features(
            pixels, None if mask is None else mask[unique], return_dict=True
        )
        by_source = dict(zip(unique, features.pooler_output))
        features.pooler_output = [by_source[source] for source in sources]
        return features

    def _postprocess(self, new_tokens: torch.Tensor) -> list[str]:
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [str(text).strip() for text in texts]


def _first_of_same_image(images: Sequence[Image.Image]) -> list[int]:
    """For each position, the first position holding the same image object."""
    first: dict[int, int] = {}
    return [first.setdefault(id(image), index) for index, image in enumerate(images)]
