"""One registry of the engine's roles: found by kind and by the checkpoint's ``model_type``, made by one factory.

Kinds: ``embedder`` (image and text embeddings, zero-shot label probabilities), ``verifier``
(image–text matching), ``grounder`` (boxes for phrases), ``generator`` (answers and captions),
``reader`` (text read from images) and ``text`` (sentence embeddings of post text).

``role_create(kind, name_or_path, device=..., dtype=...)`` reads the checkpoint's
``config.json`` (through transformers' ``AutoConfig``; local files only unless asked), looks up
the adapter registered for that kind and ``model_type``, and returns ``adapter.load(...)``.
A ``model_type`` nobody registered for the kind raises ``UnknownFamily`` naming the ones that are.

Adding a family
---------------
One adapter class in one module, decorated with ``@role_register(kind, *model_types)``, plus a
tiny random-weight checkpoint builder (a ``vlm_engine.tiny*`` function ``(directory) -> Path``)
passed as ``tiny=`` so that tests and offline demos can build it. The contract of an adapter:

- ``kind``, ``version_prefix`` and ``auto_class`` class attributes, set by the decorator
  (``auto_class`` is the name of the transformers ``Auto*`` class its weights load with;
  ``version_prefix`` starts the version string, ``prefix:name@config-sha12``);
- ``load(name_or_path, *, device, dtype, local_files_only=False)``, a classmethod returning a
  loaded instance (``CheckpointRole`` provides it: ``from_pretrained`` of the model through
  ``auto_class`` and of its processor through ``AutoProcessor``, eval mode, on ``device``);
- ``version`` (str) and ``real`` (bool: False for random weights, whose output is withheld)
  attributes on the instance;
- the methods of its kind (see ``EmbedderRole`` in ``vlm_engine.embedders`` for embedders,
  ``GrounderRole.ground``, the ``Generator`` protocol in ``vlm_engine.generation`` for generators:
  ``caption``, ``answer``, ``generate``, and whether it answers questions and follows
  instructions; a captioner may set ``answers_unavailable`` to say why it answers no questions);
  a verifier scores P(match) per (image, text) pair.

A new module holding adapters (``vlm_engine.verification`` for the verifier families, say)
appends its dotted name to ``ADAPTER_MODULES``, so that the registry imports it (lazily, on the
first look-up); a family added to an existing module needs nothing more than its decorator. Adapter modules import torch and
transformers inside functions only: the web process reads the registry (its system checks do)
without them. Families can also be registered under a plain name instead of a ``model_type``
(``names=("rapidocr",)``): a checkpoint named exactly so is that family, without a config file.
A name ending in ``:`` is a prefix (``names=("magic:",)``): every checkpoint name that starts
with it is that family, and the adapter's ``load`` reads the rest of the name; such an adapter
lists the checkpoints its name stands for in a ``checkpoints(name) -> list[str]`` classmethod, so
that they are fetched and judged real or random like any other (``checkpoint_parts``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

KINDS = ("embedder", "verifier", "grounder", "generator", "reader", "text")
# Modules whose import registers adapters; each appends to the registry through `role_register`.
ADAPTER_MODULES = (
    "vlm_engine.clip",
    "vlm_engine.embedders",
    "vlm_engine.grounding",
    "vlm_engine.generation",
    "vlm_engine.generators",
    "vlm_engine.reading",
    "vlm_engine.text",
    "vlm_engine.verification",
    "vlm_engine.magic",
)
# Any model_type: a kind's catch-all family (the text role mean-pools any encoder).
ANY_MODEL_TYPE = "*"

_Adapter = TypeVar("_Adapter", bound=type)


class UnknownFamily(ValueError):
    """A checkpoint's model_type (or a name) has no adapter registered for the kind asked."""


@dataclass(frozen=True)
class Family:
    """One registered adapter: the kind it serves, the model_types (or names) it takes, its tiny builder."""

    kind: str
    adapter: type
    model_types: tuple[str, ...]
    names: tuple[str, ...] = ()
    tiny: Callable[[str | Path], Path] | None = None

    @property
    def name(self) -> str:
        return (self.model_types or self.names)[0]


# kind -> model_type (or plain name) -> family; filled by the decorator as adapter modules import.
_FAMILIES: dict[str, dict[str, Family]] = {kind: {} for kind in KINDS}
_NAMES: dict[str, dict[str, Family]] = {kind: {} for kind in KINDS}


def role_register(
    kind: str,
    *model_types: str,
    auto_class: str = "AutoModel",
    version_prefix: str = "",
    names: tuple[str, ...] = (),
    tiny: Callable[[str | Path], Path] | None = None,
) -> Callable[[_Adapter], _Adapter]:
    """Class decorator: register an adapter for `kind` and each of `model_types` (and plain `names`).

    Sets the class attributes ``kind``, ``auto_class`` and ``version_prefix`` (default: the
    first model_type or name) on the adapter.

    Raises:
        ValueError: an unknown kind, no model_type nor name, or a model_type another adapter
            of the same kind already took.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown role kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not model_types and not names:
        raise ValueError("an adapter needs at least one model_type or name")

    def register(adapter: _Adapter) -> _Adapter:
        family = Family(kind=kind, adapter=adapter, model_types=tuple(model_types), names=tuple(names), tiny=tiny)
        for table, keys in ((_FAMILIES[kind], model_types), (_NAMES[kind], names)):
            for key in keys:
                taken = table.get(key)
                if taken is not None and taken.adapter is not adapter:
                    raise ValueError(f"{kind} {key!r} is already registered to {taken.adapter.__name__}")
                table[key] = family
        adapter.kind = kind  # type: ignore[attr-defined]  # every adapter carries these three
        adapter.auto_class = auto_class  # type: ignore[attr-defined]
        adapter.version_prefix = version_prefix or family.name  # type: ignore[attr-defined]
        return adapter

    return register


def families(kind: str) -> dict[str, Family]:
    """model_type -> family registered for `kind` (plain names not included), in registration order.

    Raises:
        ValueError: an unknown kind.
    """
    _kind_check(kind)
    _adapters_import()
    return dict(_FAMILIES[kind])


def family_names(kind: str) -> list[str]:
    """The model_types and plain names registered for `kind`, for messages and documentation."""
    _kind_check(kind)
    _adapters_import()
    return [*_FAMILIES[kind], *_NAMES[kind]]


def family_find(kind: str, model_type: str) -> Family:
    """The family registered for `kind` and `model_type`.

    Raises:
        UnknownFamily: none is, with the registered ones named.
    """
    _kind_check(kind)
    _adapters_import()
    found = _FAMILIES[kind].get(model_type) or _FAMILIES[kind].get(ANY_MODEL_TYPE)
    if found is None:
        known = ", ".join(_FAMILIES[kind]) or "none yet"
        raise UnknownFamily(f"no {kind} family is registered for model_type {model_type!r}; registered: {known}")
    return found


def checkpoint_model_type(name_or_path: str, *, local_files_only: bool = True) -> str:
    """The ``model_type`` of a checkpoint's config.json: read directly from a local directory, else
    through transformers' ``AutoConfig`` (the Hugging Face cache, or the hub unless `local_files_only`).

    Raises:
        OSError: the config cannot be found or read.
    """
    local = Path(name_or_path) / "config.json"
    if local.is_file():
        return str(json.loads(local.read_text()).get("model_type", ""))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path, local_files_only=local_files_only)
    return str(config.model_type)


def checkpoint_family(kind: str, name_or_path: str, *, local_files_only: bool = True) -> Family:
    """The family that serves `name_or_path` as a `kind`: by plain name first, else by model_type.

    Raises:
        UnknownFamily: its model_type is not registered for `kind`.
        OSError: its config cannot be found or read.
    """
    _kind_check(kind)
    _adapters_import()
    named = _named_family(kind, name_or_path)
    if named is not None:
        return named
    if list(_FAMILIES[kind]) == [ANY_MODEL_TYPE]:
        return _FAMILIES[kind][ANY_MODEL_TYPE]  # takes any checkpoint: no need to read its config
    return family_find(kind, checkpoint_model_type(name_or_path, local_files_only=local_files_only))


def checkpoint_family_problem(kind: str, name_or_path: str) -> str | None:
    """Why a local checkpoint cannot serve as a `kind`, read from its config.json; None when it can.

    Only a local directory, or the form of a ``prefix:`` name, is judged (no transformers, no network:
    the web process's system checks call this); a hub id or a missing path gives None, and loading
    reports it later.
    """
    _kind_check(kind)
    _adapters_import()
    config = Path(name_or_path) / "config.json"
    if name_or_path and _named_family(kind, name_or_path) is not None:
        try:
            checkpoint_parts(kind, name_or_path)  # a ``prefix:`` family reads its name: is it well formed?
        except ValueError as err:
            return str(err)
        return None
    if not name_or_path or not config.is_file():
        return None
    try:
        model_type = str(json.loads(config.read_text()).get("model_type", ""))
        family_find(kind, model_type)
    except UnknownFamily as err:
        return str(err)
    except (OSError, ValueError, AttributeError) as err:
        return f"{config} is not a readable model config: {err}"
    return None


def checkpoint_parts(kind: str, name_or_path: str) -> list[str]:
    """The checkpoints a configured `kind` name stands for: itself, or those a ``prefix:`` family's name lists.

    Raises:
        ValueError: a ``prefix:`` family refuses the name as malformed.
    """
    _kind_check(kind)
    _adapters_import()
    named = _named_family(kind, name_or_path)
    listed = getattr(named.adapter, "checkpoints", None) if named is not None else None
    return [name_or_path] if listed is None else list(listed(name_or_path))


def role_create(kind: str, name_or_path: str, *, device: str = "cpu", dtype: str = "float32",
                local_files_only: bool = False) -> Any:
    """Load `name_or_path` as a role of `kind` through the adapter its model_type is registered to.

    Args:
        kind: one of KINDS.
        name_or_path: a hub id, a local checkpoint directory, or a registered plain name.
        device: torch device string, e.g. "cpu" or "cuda:0".
        dtype: "float32", "bfloat16" or "float16".
        local_files_only: never touch the network (local path or HF cache only).

    Raises:
        UnknownFamily: the checkpoint's model_type has no adapter of this kind.
        OSError: the checkpoint cannot be found or read.
    """
    family = checkpoint_family(kind, name_or_path, local_files_only=local_files_only)
    return family.adapter.load(name_or_path, device=device, dtype=dtype,  # type: ignore[attr-defined]
                               local_files_only=local_files_only)


_Role = TypeVar("_Role", bound="CheckpointRole")


class CheckpointRole:
    """The shared part of every transformers-backed role: a model, its processor, a version, a device.

    Subclasses registered with ``role_register`` get ``load`` for free; ``_setup`` reads what they
    need from the model once (a logit scale, a token limit) after the shared fields are set.
    """

    kind: ClassVar[str] = ""
    auto_class: ClassVar[str] = "AutoModel"
    version_prefix: ClassVar[str] = ""

    def __init__(self, model: Any, processor: Any, *, version: str, device: str, real: bool = True) -> None:
        self.model = model
        self.processor = processor
        self.version = version
        self.real = real  # False: random weights, so the output is no finding
        self.device = device
        self._setup()

    def _setup(self) -> None:
        """Read per-model constants once; nothing by default."""

    @classmethod
    def load(cls: type[_Role], name_or_path: str, *, device: str, dtype: str,
             local_files_only: bool = False) -> _Role:
        """Load a checkpoint and its processor with `from_pretrained`.

        Args:
            name_or_path: a Hugging Face model id or a local checkpoint directory.
            device: torch device string, e.g. "cpu" or "cuda:0".
            dtype: "float32", "bfloat16" or "float16".
            local_files_only: never touch the network (local path or HF cache only).

        Raises:
            OSError: the checkpoint cannot be found or read.
            UnknownFamily: the checkpoint is not one of the model_types this adapter is registered for.
        """
        import transformers

        from vlm_engine.checkpoints import checkpoint_is_real, checkpoint_load, checkpoint_version

        cls._model_type_check(name_or_path, local_files_only)
        auto_class = getattr(transformers, cls.auto_class)
        model, processor = checkpoint_load(auto_class, name_or_path, device=device, dtype=dtype,
                                           local_files_only=local_files_only)
        version = checkpoint_version(cls.version_prefix, name_or_path)
        return cls(model, processor, version=version, device=device, real=checkpoint_is_real(name_or_path))

    @classmethod
    def _model_type_check(cls, name_or_path: str, local_files_only: bool) -> None:
        """Refuse a checkpoint of a model_type this adapter is not registered for (before loading weights)."""
        accepted = [key for key, family in _FAMILIES.get(cls.kind, {}).items() if family.adapter is cls]
        if not accepted or ANY_MODEL_TYPE in accepted:
            return
        model_type = checkpoint_model_type(name_or_path, local_files_only=local_files_only)
        if model_type not in accepted:
            raise UnknownFamily(f"{name_or_path} is a {model_type} model; {cls.__name__} takes "
                                f"{', '.join(accepted)} (registered {cls.kind} families: "
                                f"{', '.join(_FAMILIES[cls.kind])})")




def _named_family(kind: str, name_or_path: str) -> Family | None:
    """The family registered under exactly this name, or under the ``prefix:`` it starts with."""
    exact = _NAMES[kind].get(name_or_path)
    if exact is not None or ":" not in name_or_path:
        return exact
    return _NAMES[kind].get(name_or_path.split(":", 1)[0] + ":")


def _kind_check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown role kind {kind!r}; expected one of {', '.join(KINDS)}")


def _adapters_import() -> None:
    for module in ADAPTER_MODULES:
        importlib.import_module(module)
