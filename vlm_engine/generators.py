"""Generator families beside SmolVLM: BLIP, BLIP-2, GIT and ViT+GPT-2 by their own task, Idefics v1 by instruction.

Unlike the chat generator (``vlm_engine.generation.GeneratorRole``) these checkpoints take no
instruction: a captioner continues an optional prefix ("a photo of"), a VQA model answers a
question. So each adapter serves ``caption`` and ``answer`` directly, and one that answers no
questions (a pure captioner) says so with ``QuestionsUnanswered`` instead of captioning a question.

Their ``generate`` (the chat role's entry point) answers the prompts as questions. Padding
changes their output (BLIP's question encoder and GIT's positions see it), so each call runs
one ``generate`` per prompt length: a batch gives exactly what one-at-a-time does.

Idefics v1 (Flamingo's open reproduction: gated cross-attention into a frozen LM) follows
instructions, as SmolVLM does, and is served as the chat generator with its own prompt format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image

from vlm_engine.generation import GeneratorRole
from vlm_engine.registry import CheckpointRole, UnknownFamily, role_register
from vlm_engine.tiny_generators import (ImageProcessorAndTokenizer, tiny_blip2_write, tiny_blip_write, tiny_git_write,
                                        tiny_idefics_write, tiny_vit_gpt2_write)

if TYPE_CHECKING:
    import torch


class QuestionsUnanswered(ValueError):
    """The generator is a pure captioner: it answers no questions."""


class TaskGenerator(CheckpointRole):
    """A captioner (and, where `answers_questions`, a VQA model) with greedy, length-grouped generation.

    Subclasses turn a prefix or a question into token ids (`_prompt_ids`) and run the model's own
    ``generate`` on a group of equal-length prompts (`_generate`).
    """

    answers_questions: ClassVar[bool] = False
    # No chat template: the cascade asks it for captions and answers, never instructions.
    instructed: ClassVar[bool] = False

    @property
    def family(self) -> str:
        """The registered family's name, as messages name it (``blip``, ``git``…)."""
        return self.version_prefix

    @classmethod
    def load(cls, name_or_path: str, *, device: str, dtype: str,
             local_files_only: bool = False) -> TaskGenerator:
        """Load a checkpoint with the adapter for the head it was saved with (config ``architectures``).

        Raises:
            OSError: the checkpoint cannot be found or read.
            UnknownFamily: not a model_type of this family, or saved with a head that does not
                generate (a BLIP or BLIP-2 image–text matching checkpoint: a verifier).
        """
        from transformers import AutoConfig

        cls._model_type_check(name_or_path, local_files_only)
        saved = AutoConfig.from_pretrained(name_or_path, local_files_only=local_files_only).architectures or []
        heads = cls._heads()
        found = [heads[name] for name in saved if name in heads]
        if heads and saved and not found:
            raise UnknownFamily(f"{name_or_path} is a {', '.join(saved)} checkpoint; the {cls.version_prefix} "
                                f"generator takes {', '.join(heads)}")
        adapter = found[0] if found else next(iter(heads.values()), cls)
        # The shared load, bound to the adapter chosen (this load would choose again).
        loaded: TaskGenerator = super(TaskGenerator, adapter).load(
            name_or_path, device=device, dtype=dtype, local_files_only=local_files_only)
        return loaded

    @classmethod
    def _heads(cls) -> dict[str, type[TaskGenerator]]:
        """Saved head (an ``architectures`` entry) -> the adapter serving it; empty: any head of the model_type."""
        return {}

    def caption(self, images: Sequence[Image.Image], prefixes: Sequence[str | None], *,
                max_new_tokens: int = 32) -> list[str]:
        """Greedy captions, one per image; a prefix ("a photo of") starts its caption.

        Args:
            images: the images to caption.
            prefixes: None for a plain caption, else the words the caption starts with (kept in it).
            max_new_tokens: the longest caption, in tokens after the prefix.

        Raises:
            ValueError: `images` and `prefixes` differ in length.
        """
        return self._grouped(images, [("caption", prefix) for prefix in prefixes], max_new_tokens)

    def answer(self, images: Sequence[Image.Image], questions: Sequence[str], *,
               max_new_tokens: int = 32) -> list[str]:
        """Greedy answers, one per (image, question) pair.

        Raises:
            QuestionsUnanswered: the family is a pure captioner.
            ValueError: `images` and `questions` differ in length.
        """
        if not self.answers_questions:
            raise QuestionsUnanswered(f"{self.family} answers no questions")
        return self._grouped(images, [("answer", question) for question in questions], max_new_tokens)

    def generate(self, images: Sequence[Image.Image], prompts: Sequence[str], *,
                 max_new_tokens: int = 32) -> list[str]:
        """The prompts answered as questions (`answer`): these families follow no instructions."""
        return self.answer(images, prompts, max_new_tokens=max_new_tokens)

    def _grouped(self, images: Sequence[Image.Image], tasks: Sequence[tuple[str, str | None]],
                 max_new_tokens: int) -> list[str]:
        """One `generate` per prompt length, results put back in the callers' order."""
        if len(images) != len(tasks):
            raise ValueError(f"{len(images)} images but {len(tasks)} prompts")
        prompt_ids = [self._prompt_ids(task, text) for task, text in tasks]
        groups: dict[tuple[str, int], list[int]] = {}
        for row, ((task, _), ids) in enumerate(zip(tasks, prompt_ids)):
            groups.setdefault((task, len(ids)), []).append(row)
        texts: list[str] = [""] * len(tasks)
        for (task, _), rows in groups.items():
            pixels = self._pixels([images[row] for row in rows])
            found = self._generate(task, pixels, [prompt_ids[row] for row in rows], max_new_tokens)
            for row, text in zip(rows, found):
                texts[row] = text
        return texts

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        image_processor = getattr(self.processor, "image_processor", self.processor)
        pixels: torch.Tensor = image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=self.model.dtype)

    def _text_ids(self, text: str) -> list[int]:
        ids: list[int] = self._tokenizer()(text, add_special_tokens=False)["input_ids"]
        return ids

    def _tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def _decoded(self, sequences: torch.Tensor, start: int) -> list[str]:
        """The generated tokens from column `start` on (a prefix kept), as stripped text."""
        texts = self._tokenizer().batch_decode(sequences[:, start:].cpu(), skip_special_tokens=True)
        return [str(text).strip() for text in texts]

    def _prompt_ids(self, task: str, text: str | None) -> list[int]:
        raise NotImplementedError

    def _generate(self, task: str, pixels: torch.Tensor, prompt_ids: list[list[int]],
                  max_new_tokens: int) -> list[str]:
        """The model's own greedy ``generate`` on the image and equal-length prompt ids."""
        ids = _ids_tensor(prompt_ids, self.device)
        output = _inference(lambda: self.model.generate(pixel_values=pixels, input_ids=ids, do_sample=False,
                                                        max_new_tokens=max_new_tokens))
        return self._decoded(output, self._kept_from(task, ids.shape[1]))

    def _kept_from(self, task: str, prompt_width: int) -> int:
        """The first output column that belongs in the text (BLIP returns its decoder's sequence only)."""
        return 0


def _ids_tensor(rows: list[list[int]], device: str) -> torch.Tensor:
    import torch

    return torch.tensor(rows, dtype=torch.long, device=device)


def _inference(run: Callable[[], torch.Tensor]) -> torch.Tensor:
    import torch

    with torch.inference_mode():
        return run()


@role_register("generator", "blip", auto_class="BlipForConditionalGeneration", tiny=tiny_blip_write)
class BlipGenerator(TaskGenerator):
    """BLIP: a ``BlipForConditionalGeneration`` checkpoint captions (plain or from a prefix), a
    ``BlipForQuestionAnswering`` one answers questions; the config's ``architectures`` says which."""

    @classmethod
    def _heads(cls) -> dict[str, type[TaskGenerator]]:
        return {"BlipForConditionalGeneration": BlipCaptioner, "BlipForQuestionAnswering": BlipAnswerer}

    def _prompt_ids(self, task: str, text: str | None) -> list[int]:
        # As BLIP's processor: [CLS] text [SEP]. Its generate makes the first id [DEC] when captioning,
        # and drops the [SEP] there; the VQA head encodes the whole question.
        tokenizer = self._tokenizer()
        return [tokenizer.cls_token_id, *self._text_ids(text or ""), tokenizer.sep_token_id]


class BlipCaptioner(BlipGenerator):
    """BLIP captioning: the text decoder continues [DEC] (+ the prefix) attending to the image."""

    auto_class: ClassVar[str] = "BlipForConditionalGeneration"


class BlipAnswerer(BlipGenerator):
    """BLIP VQA: the question is encoded against the image, the answer decoded from that; no captions."""

    auto_class: ClassVar[str] = "BlipForQuestionAnswering"
    answers_questions: ClassVar[bool] = True

    def caption(self, images: Sequence[Image.Image], prefixes: Sequence[str | None], *,
                max_new_tokens: int = 32) -> list[str]:
        """Captions asked of the VQA head as a question (`CAPTION_QUESTION`), prefix ignored."""
        return self.answer(images, [CAPTION_QUESTION] * len(prefixes), max_new_tokens=max_new_tokens)


# What a VQA-only checkpoint is asked for a caption.
CAPTION_QUESTION = "what is in the picture?"


@role_register("generator", "git", auto_class="GitForCausalLM", tiny=tiny_git_write)
class GitGenerator(TaskGenerator):
    """GIT: one decoder over image tokens then text; a caption continues [CLS] (+ a prefix), an answer
    continues [CLS] + the question, as GIT's VQA checkpoints were trained."""

    answers_questions: ClassVar[bool] = True

    def _prompt_ids(self, task: str, text: str | None) -> list[int]:
        return [self._tokenizer().cls_token_id, *self._text_ids(text or "")]

    def _kept_from(self, task: str, prompt_width: int) -> int:
        # A caption keeps its prefix (after [CLS]); an answer drops the question it continues.
        return 1 if task == "caption" else prompt_width


@role_register("generator", "vision-encoder-decoder", auto_class="VisionEncoderDecoderModel",
               version_prefix="vit-gpt2", tiny=tiny_vit_gpt2_write)
class VisionEncoderDecoderGenerator(TaskGenerator):
    """An image encoder with a text decoder cross-attending to it (ViT + GPT-2, VirTex-like): a
    captioner only. Its checkpoint has no joint processor: an image processor and a tokenizer."""

    def _setup(self) -> None:
        from transformers import AutoImageProcessor

        # The shared load found only the tokenizer (AutoProcessor's fallback); the model's files hold both.
        image_processor = AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call]  # unannotated
            self.model.name_or_path, local_files_only=True)
        self.processor = ImageProcessorAndTokenizer(image_processor, self.processor)

    def _prompt_ids(self, task: str, text: str | None) -> list[int]:
        return [self.model.config.decoder_start_token_id, *self._text_ids(text or "")]

    def _generate(self, task: str, pixels: torch.Tensor, prompt_ids: list[list[int]],
                  max_new_tokens: int) -> list[str]:
        ids = _ids_tensor(prompt_ids, self.device)
        # Its pad token is its end token, so generate cannot tell the prompt's mask itself: no padding, all ones.
        output = _inference(lambda: self.model.generate(pixel_values=pixels, decoder_input_ids=ids,
                                                        decoder_attention_mask=ids.new_ones(ids.shape),
                                                        do_sample=False, max_new_tokens=max_new_tokens))
        return self._decoded(output, 0)


# BLIP-2's VQA prompt, as its paper and model card ask its OPT checkpoints.
BLIP2_QUESTION = "Question: {question} Answer:"


@role_register("generator", "blip-2", auto_class="Blip2ForConditionalGeneration", version_prefix="blip-2",
               tiny=tiny_blip2_write)
class Blip2Generator(TaskGenerator):
    """BLIP-2: a frozen image encoder, a Q-Former whose query tokens prompt a frozen LM. With a
    decoder-only LM (OPT) a caption continues the image tokens (+ a prefix) and an answer continues
    `BLIP2_QUESTION`; an encoder-decoder LM (Flan-T5) returns only the new text."""

    answers_questions: ClassVar[bool] = True

    @classmethod
    def _heads(cls) -> dict[str, type[TaskGenerator]]:
        return {"Blip2ForConditionalGeneration": Blip2Generator}

    def _prompt_ids(self, task: str, text: str | None) -> list[int]:
        # As Blip2Processor: one image token per query token, then the text as the tokenizer encodes it.
        tokenizer = self._tokenizer()
        image_ids = [self.model.config.image_token_id] * self.model.config.num_query_tokens
        if task == "answer":
            text = BLIP2_QUESTION.format(question=(text or "").strip())
        return [*image_ids, *(tokenizer(text).input_ids if text else [tokenizer.bos_token_id])]

    def _kept_from(self, task: str, prompt_width: int) -> int:
        if task == "caption" or not self.model.config.use_decoder_only_language_model:
            return 0  # the image tokens and the start token are special: decoding drops them
        return prompt_width


def idefics_prompt(image: Image.Image, prompt: str) -> list[Any]:
    """One Idefics-instruct turn: the user's image and instruction, then the assistant's cue."""
    return ["User:", image, f"{prompt}<end_of_utterance>", "\nAssistant:"]


@role_register("generator", "idefics", auto_class="IdeficsForVisionText2Text", version_prefix="idefics",
               tiny=tiny_idefics_write)
class IdeficsGenerator(GeneratorRole):
    """Idefics v1: the chat generator's batched, left-padded greedy generation, with Idefics' prompt
    lists (text and images interleaved) in place of a chat template."""

    def _preprocess(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> Any:
        # The end-of-utterance token is written into the prompt, so the processor must not add its own.
        return self.processor(text=[idefics_prompt(image, prompt) for image, prompt in zip(images, prompts)],
                              padding=True, add_end_of_utterance_token=False, return_tensors="pt")
