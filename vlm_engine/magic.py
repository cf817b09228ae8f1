"""MaGiC captions: a text-only causal LM whose decoding the embedder's image–text similarity steers.

MaGiC (Su et al. 2022, "Language Models Can See: Plugging Visual Controls in Text Generation",
arXiv:2205.02655) needs no training: at each step it takes the LM's top-k next tokens V(k) and picks

    x_t = argmax_{v in V(k)} (1 − α)·p_LM(v | x<t)
                             − α·max_j cos(h_v, h_{x_j})                 (degeneration penalty)
                             + β·softmax_{V(k)}(sim(I, [x<t : v]))[v]     (magic score)

where h are the LM's last-layer hidden states (h_v: the candidate's, h_{x_j}: each earlier
token's) and sim(I, text) is the embedder's logit for the image and the text so far with the
candidate (CLIP: exp(logit_scale)·cos), a softmax taken over the k candidates only. The paper's
captioning setting is k=45, α=0.1, β=2.0. With α = β = 0 the choice is the LM's most probable
token: the LM's own greedy output.

Here it is a generator family for sites without a vision-language model: captions (plain, or
continuing a prefix such as "a photo of") and nothing else. A text-only LM never sees the
image except through the embedder's choice among its candidates, so it cannot answer
questions, read text or write a rationale: those prompts get "" (`answers_unavailable`).

The generator is configured as ``magic:<causal LM>?embedder=<embedder checkpoint>&k=45&alpha=0.1&beta=2.0``
(`magic_spec_parse`); any ``AutoModelForCausalLM`` serves, and any registered embedder family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image

from vlm_engine.generation import PROMPTS, conditional_caption_prompt
from vlm_engine.registry import role_create, role_register
from vlm_engine.tiny_magic import tiny_causal_lm_write

if TYPE_CHECKING:
    import torch

MAGIC_PREFIX = "magic:"
# Why the family returns "" to anything but a caption prompt.
ANSWERS_UNAVAILABLE = ("MaGiC decodes captions from a text-only language model steered by image similarity; "
                       "it cannot answer questions, read text or explain a decision")
_CAPTION_PROMPTS = frozenset((PROMPTS["caption"], PROMPTS["detailed_caption"]))
_CONDITIONAL_HEAD, _CONDITIONAL_TAIL = conditional_caption_prompt("\0").split("\0")


@dataclass(frozen=True)
class MagicSettings:
    """The decoding's weights: k candidates per step, α on the degeneration penalty, β on the image."""

    k: int = 45
    alpha: float = 0.1
    beta: float = 2.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"MaGiC's k must be at least 1, not {self.k}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"MaGiC's alpha must lie in [0, 1], not {self.alpha}")
        if self.beta < 0.0:
            raise ValueError(f"MaGiC's beta must not be negative, not {self.beta}")


def magic_spec_parse(spec: str) -> tuple[str, str, MagicSettings]:
    """``magic:<lm>?embedder=<checkpoint>&k=..&alpha=..&beta=..`` -> (lm, embedder, settings).

    Raises:
        ValueError: not a ``magic:`` spec, no LM or embedder named, an unknown or malformed option.
    """
    if not spec.startswith(MAGIC_PREFIX):
        raise ValueError(f"{spec!r} is not a MaGiC generator (it starts with {MAGIC_PREFIX!r})")
    lm, _, query = spec[len(MAGIC_PREFIX):].partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    embedder = options.pop("embedder", "")
    unknown = sorted(set(options) - {"k", "alpha", "beta"})
    if not lm or not embedder or unknown:
        raise ValueError(f"{spec!r}: expected magic:<causal LM>?embedder=<checkpoint>[&k=..&alpha=..&beta=..]"
                         + (f"; unknown options {', '.join(unknown)}" if unknown else ""))
    defaults = MagicSettings()
    settings = MagicSettings(k=int(options.get("k", defaults.k)), alpha=float(options.get("alpha", defaults.alpha)),
                             beta=float(options.get("beta", defaults.beta)))
    return lm, embedder, settings


class MagicDecoder:
    """MaGiC search over one causal LM and one embedder (see the module docstring for the score)."""

    def __init__(self, model: Any, tokenizer: Any, embedder: Any, *, settings: MagicSettings, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.embedder = embedder
        self.settings = settings
        self.device = device

    def decode(self, image_embedding: np.ndarray | None, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """The new token ids after `prompt_ids`, ending at the LM's end-of-text token (kept) or the limit.

        Each step runs the LM once over the k candidate continuations, and the embedder once over
        their texts (not at all when β is 0). `image_embedding` may be None only when β is 0.
        """
        import torch

        ids = torch.tensor([list(prompt_ids)], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, -1]
            new: list[int] = []
            for _ in range(max_new_tokens):
                probs, candidates = logits.float().softmax(-1).topk(min(self.settings.k, logits.shape[-1]))
                rows = torch.cat([ids.expand(len(candidates), -1), candidates[:, None]], dim=1)
                output = self.model(input_ids=rows, output_hidden_states=True)
                score = self._scores(probs, output.hidden_states[-1], rows, image_embedding)
                choice = int(score.argmax())
                new.append(int(candidates[choice]))
                ids, logits = rows[choice : choice + 1], output.logits[choice, -1]
                if new[-1] == self.tokenizer.eos_token_id:
                    break
        return new

    def _scores(self, probs: torch.Tensor, hidden: torch.Tensor, rows: torch.Tensor,
                image_embedding: np.ndarray | None) -> torch.Tensor:
        alpha, beta = self.settings.alpha, self.settings.beta
        score = (1.0 - alpha) * probs
        if alpha:
            score = score - alpha * _degeneration_penalty(hidden)
        if beta:
            if image_embedding is None:
                raise ValueError("MaGiC with beta > 0 needs the image's embedding")
            score = score + beta * self._magic_score(image_embedding, rows).to(score.device)
        return score

    def _magic_score(self, image_embedding: np.ndarray, rows: torch.Tensor) -> torch.Tensor:
        """softmax over the candidates of the embedder's logit for (image, text with the candidate)."""
        import torch

        texts = self.tokenizer.batch_decode(rows.cpu(), skip_special_tokens=True)
        logits = self.embedder.label_logits(image_embedding[None, :], self.embedder.embed_texts(texts))[0]
        return torch.from_numpy(logits).softmax(-1).float()


def _degeneration_penalty(hidden: torch.Tensor) -> torch.Tensor:
    """Per candidate row: the largest cosine between its last hidden state and those before it."""
    import torch

    normed = torch.nn.functional.normalize(hidden.float(), dim=-1)
    if normed.shape[1] < 2:
        return torch.zeros(normed.shape[0], device=normed.device)
    cosine = (normed[:, :-1] @ normed[:, -1:].transpose(1, 2)).squeeze(-1)
    return cosine.max(dim=-1).values


# Its tiny builder writes the LM half; the embedder half is any embedder family's tiny checkpoint.
@role_register("generator", names=(MAGIC_PREFIX,), auto_class="AutoModelForCausalLM", version_prefix="magic",
               tiny=tiny_causal_lm_write)
class MagicRole:
    """Captions by MaGiC decoding: a causal LM and an embedder, no vision-language model."""

    kind: ClassVar[str] = ""  # the registry's three contract attributes, set by role_register
    auto_class: ClassVar[str] = "AutoModelForCausalLM"
    version_prefix: ClassVar[str] = ""
    answers_unavailable: ClassVar[str] = ANSWERS_UNAVAILABLE
    answers_questions: ClassVar[bool] = False  # the `Generator` protocol of vlm_engine.generation
    instructed: ClassVar[bool] = False

    def __init__(self, decoder: MagicDecoder, *, version: str, real: bool) -> None:
        self.decoder = decoder
        self.version = version
        self.real = real

    @classmethod
    def load(cls, name_or_path: str, *, device: str, dtype: str, local_files_only: bool = False) -> MagicRole:
        """Load the LM (``AutoModelForCausalLM``, ``AutoTokenizer``) and the embedder a ``magic:`` spec names.

        Raises:
            ValueError: a malformed spec (`magic_spec_parse`).
            OSError: a checkpoint cannot be found or read.
            UnknownFamily: the embedder's model_type has no embedder adapter.
        """
        from transformers import AutoModelForCausalLM

        from vlm_engine.checkpoints import checkpoint_is_real, checkpoint_load, checkpoint_version

        lm, embedder_name, settings = magic_spec_parse(name_or_path)
        embedder = role_create("embedder", embedder_name, device=device, dtype=dtype,
                               local_files_only=local_files_only)
        # A causal LM's "processor" is its tokenizer (AutoProcessor falls back to AutoTokenizer).
        model, tokenizer = checkpoint_load(AutoModelForCausalLM, lm, device=device, dtype=dtype,
                                           local_files_only=local_files_only)
        decoder = MagicDecoder(model, tokenizer, embedder, settings=settings, device=device)
        weights = f"k={settings.k},alpha={settings.alpha},beta={settings.beta}"
        version = f"{checkpoint_version(cls.version_prefix, lm)}[{weights};{embedder.version}]"
        return cls(decoder, version=version, real=checkpoint_is_real(lm) and bool(embedder.real))

    @classmethod
    def checkpoints(cls, name: str) -> list[str]:
        """The LM and the embedder a ``magic:`` spec names, for fetching and for judging them real.

        Raises:
            ValueError: a malformed spec (`magic_spec_parse`).
        """
        lm, embedder, _ = magic_spec_parse(name)
        return [lm, embedder]

    def generate(self, images: Sequence[Image.Image], prompts: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
        """A MaGiC caption for each caption prompt (`PROMPTS`, `conditional_caption_prompt`), "" for any other.

        Each distinct image is embedded once, in one embedder pass; the decoding runs image by image.

        Raises:
            ValueError: `images` and `prompts` differ in length.
        """
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        starts = [caption_start(prompt) for prompt in prompts]
        wanted = [index for index, start in enumerate(starts) if start is not None]
        embeddings = self._image_embeddings([images[index] for index in wanted])
        captions = [""] * len(prompts)
        for index in wanted:
            captions[index] = self._caption_one(embeddings[id(images[index])], starts[index] or "",
                                                max_new_tokens=max_new_tokens)
        return captions

    @property
    def family(self) -> str:
        return "magic"

    def caption(self, images: Sequence[Image.Image], prefixes: Sequence[str | None], *,
                max_new_tokens: int = 32) -> list[str]:
        """A MaGiC caption of each image, continuing its prefix where one is given."""
        embeddings = self._image_embeddings(images)
        return [self._caption_one(embeddings[id(image)], prefix or "", max_new_tokens=max_new_tokens)
                for image, prefix in zip(images, prefixes)]

    def answer(self, images: Sequence[Image.Image], questions: Sequence[str], *,
               max_new_tokens: int = 32) -> list[str]:
        """Never: MaGiC answers no questions.

        Raises:
            QuestionsUnanswered: always, with the reason.
        """
        from vlm_engine.generators import QuestionsUnanswered

        raise QuestionsUnanswered(ANSWERS_UNAVAILABLE)

    def _caption_one(self, image_embedding: np.ndarray, start: str, *, max_new_tokens: int) -> str:
        """The caption continuing `start` ("" starts from the LM's start-of-text token), `start` included."""
        tokenizer = self.decoder.tokenizer
        prompt_ids = tokenizer(start, add_special_tokens=False).input_ids if start.strip() else [tokenizer.bos_token_id]
        new = self.decoder.decode(image_embedding, prompt_ids, max_new_tokens)
        return str(tokenizer.decode([*prompt_ids, *new], skip_special_tokens=True)).strip()

    def _image_embeddings(self, images: Sequence[Image.Image]) -> dict[int, np.ndarray]:
        distinct = list({id(image): image for image in images}.values())
        embedded = self.decoder.embedder.embed_images(distinct) if distinct else []
        return {id(image): embedding for image, embedding in zip(distinct, embedded)}


def caption_start(prompt: str) -> str | None:
    """The text a caption prompt asks to start with ("" for a plain caption); None for any other prompt."""
    if prompt in _CAPTION_PROMPTS:
        return ""
    if prompt.startswith(_CONDITIONAL_HEAD) and prompt.endswith(_CONDITIONAL_TAIL):
        return prompt[len(_CONDITIONAL_HEAD) : len(prompt) - len(_CONDITIONAL_TAIL)]
    return None

