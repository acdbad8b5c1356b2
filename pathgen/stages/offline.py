"""The offline provider: a deterministic, network-free baseline driven by a CLIP model.

It answers the same :class:`ChatRequest` objects as the HTTP providers and reads
``request.meta["stage"]`` (set by the stage runners) to decide what to do:

* ``describe``: CLIP zero-shot scores of the morphology vocabulary -> confident findings;
* ``degrade`` (llm mode): the rule degrader, answered as the JSON an LLM would give;
* ``revise``: swap contradicted contrast terms back, drop unsupported sentences;
* ``summarize``: extractive, within ``meta["max_clip_tokens"]`` tokens.

Token counts use the CLIP tokenizer; cost is zero (prices in the settings still apply).

Example::

    client = make_offline_client(settings.captioning.describe, clip_model)
    out = await run_describe(client, settings.captioning.describe, DescribeInput(image=tile))
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

from pathgen.errors import ProviderError
from pathgen.llm.base import ChatRequest, ChatResult
from pathgen.settings import StageSettings
from pathgen.stages.clip_baseline import (
    OptionEmbeddings,
    describe_with_clip,
    image_embedding,
    revise_with_clip,
    summarize_extractive,
)
from pathgen.stages.degrade_rules import degrade_rules
from pathgen.stages.fuse import fuse_extractive
from pathgen.stages.protocols import ClipScorer
from pathgen.stages.vocabulary import load_contrast_vocabulary, load_morphology_vocabulary

PROVIDER = "offline"


def _clip_label(clip: ClipScorer, clip_name: str | None) -> str:
    if clip_name:
        return clip_name
    for attr in ("fingerprint", "name", "model_name"):
        value = getattr(clip, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(clip).__name__


class OfflineClient:
    """An :class:`~pathgen.llm.base.LLMClient` that runs the CLIP baselines locally."""

    provider = PROVIDER

    def __init__(
        self,
        clip: ClipScorer,
        *,
        clip_name: str | None = None,
        prompts_dir: Path | str | None = None,
        default_max_clip_tokens: int = 77,
    ) -> None:
        self.clip = clip
        self.model = f"offline-clip:{_clip_label(clip, clip_name)}"
        self.morphology = load_morphology_vocabulary(prompts_dir)
        self.contrast = load_contrast_vocabulary(prompts_dir)
        self.default_max_clip_tokens = default_max_clip_tokens
        self._options: OptionEmbeddings | None = None
        self._lock = threading.Lock()

    def _option_embeddings(self) -> OptionEmbeddings:
        with self._lock:
            if self._options is None:
                self._options = OptionEmbeddings(self.clip, self.morphology)
            return self._options

    @staticmethod
    def _image(request: ChatRequest) -> Any | None:
        from PIL import Image, UnidentifiedImageError

        for message in request.messages:
            for part in message.images:
                try:
                    with Image.open(io.BytesIO(part.jpeg)) as img:
                        return img.convert("RGB")
                except (UnidentifiedImageError, OSError) as exc:
                    raise ProviderError(
                        f"offline provider cannot decode the request image: {exc}",
                        retryable=False,
                    ) from None
        return None

    def _description(self, request: ChatRequest) -> str:
        description = request.meta.get("description")
        if not isinstance(description, str):
            raise ProviderError(
                f"offline {request.meta.get('stage')} request has no meta['description']",
                retryable=False,
            )
        return description

    def _answer(self, request: ChatRequest) -> str:
        stage = request.meta.get("stage")
        if stage == "describe":
            image = self._image(request)
            if image is None:
                raise ProviderError("offline describe request has no image", retryable=False)
            text, _ = describe_with_clip(
                image_embedding(self.clip, image), self._option_embeddings()
            )
            return text
        if stage == "revise":
            description = self._description(request)
            image = self._image(request)
            if image is None:
                return description
            emb = image_embedding(self.clip, image)
            text, _ = revise_with_clip(emb, description, self.clip, self.contrast)
            return text
        if stage == "summarize":
            limit = int(request.meta.get("max_clip_tokens") or self.default_max_clip_tokens)
            return summarize_extractive(self._description(request), self.clip, limit)
        if stage == "degrade":
            result = degrade_rules(
                self._description(request),
                seed=int(request.meta.get("seed", 0)),
                n_edits=int(request.meta.get("n_edits", 3)),
                vocab=self.contrast,
            )
            return json.dumps({"degraded": result.text, "edits": result.edits})
        if stage == "fuse":
            descriptions = request.meta.get("descriptions")
            if not isinstance(descriptions, list):
                raise ProviderError(
                    "offline fuse request has no meta['descriptions']", retryable=False
                )
            return fuse_extractive(descriptions)
        raise ProviderError(
            f"the offline provider cannot run stage {stage!r}: use describe, degrade, revise, "
            "fuse or summarize, or configure an openai/mistral provider for it",
            retryable=False,
        )

    def _complete_sync(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        text = self._answer(request)
        input_tokens = sum(self.clip.count_tokens(m.text) for m in request.messages)
        return ChatResult(
            text=text,
            model=self.model,
            provider=PROVIDER,
            input_tokens=input_tokens,
            output_tokens=self.clip.count_tokens(text) if text else 0,
            latency_s=time.perf_counter() - started,
            finish_reason="stop",
            attempts=1,
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Answer ``request`` locally (CLIP work runs in a thread)."""
        return await asyncio.to_thread(self._complete_sync, request)

    async def aclose(self) -> None:
        """Nothing to release."""


def make_offline_client(
    stage_settings: StageSettings,
    clip: ClipScorer,
    *,
    clip_name: str | None = None,
    prompts_dir: Path | str | None = None,
    max_clip_tokens: int = 77,
) -> OfflineClient:
    """The offline client for a stage (``stage_settings.provider`` must be ``"offline"``)."""
    if stage_settings.provider != PROVIDER:
        raise ProviderError(
            f"make_offline_client got provider {stage_settings.provider!r}; "
            "set the stage's provider to 'offline'",
            retryable=False,
        )
    return OfflineClient(
        clip, clip_name=clip_name, prompts_dir=prompts_dir, default_max_clip_tokens=max_clip_tokens
    )
