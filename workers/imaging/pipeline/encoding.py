"""Prompt encoding: a request's prompt and negative prompt as pipeline embeddings, with A1111
weights (SD 1.x/2.x), ``<lora:...>`` tags removed and textual-inversion embeddings applied."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.imaging.pipeline.embeddings import (
    Embedding,
    embedding_text,
    embeddings_applied,
    token_pool,
    used_embeddings,
)
from workers.imaging.pipeline.loading import pipeline_family
from workers.imaging.pipeline.request import GenerationRequest


def strip_lora_tags(prompt: str) -> str:
    """The prompt without its ``<lora:...>`` tags (the caller resolves them to paths)."""
    try:
        from workers.imaging.prompts import extract_loras
    except ImportError:  # pragma: no cover
        return prompt
    return extract_loras(prompt)[0]


def encode_prompts(pipe: Any, prompt: str, negative: str, clip_skip: int) -> dict[str, Any]:
    """Embeddings for one prompt and its negative, as pipeline keyword arguments (one row each)."""
    prompt, negative = strip_lora_tags(prompt), strip_lora_tags(negative)
    device = pipe._execution_device
    if pipeline_family(pipe) == "sdxl":  # two encoders: the pipeline's own (unweighted) encoding
        pe, npe, ppe, nppe = pipe.encode_prompt(
            prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative,
            clip_skip=clip_skip - 1 or None,
        )
        return {
            "prompt_embeds": pe,
            "negative_prompt_embeds": npe,
            "pooled_prompt_embeds": ppe,
            "negative_pooled_prompt_embeds": nppe,
        }
    try:
        from workers.imaging.prompts import encode_weighted
    except ImportError:  # pragma: no cover - prompts ships with this package
        pe, npe = pipe.encode_prompt(
            prompt, device, 1, True, negative, clip_skip=clip_skip - 1 or None
        )
    else:
        pe, npe = encode_weighted(pipe, prompt, negative, clip_skip=clip_skip, device=device)
    return {"prompt_embeds": pe, "negative_prompt_embeds": npe}


def encode_request(pipe: Any, req: GenerationRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's prompt embeddings, its textual-inversion embeddings applied, and the
    infotext params that adds (A1111's ``TI hashes``)."""
    used = used_embeddings(pipe, req)
    with embeddings_applied(pipe, used) as rewrite:
        embeds = encode_prompts(
            pipe,
            rewrite(strip_lora_tags(req.prompt)),
            rewrite(strip_lora_tags(req.negative_prompt)),
            req.clip_skip,
        )
    params = {"TI hashes": ", ".join(f"{e.name}: {e.short_hash}" for e in used)} if used else {}
    return embeds, params


def prompt_chunk_count(pipe: Any, req: GenerationRequest, used: Sequence[Embedding] = ()) -> int:
    """How many 77-token chunks the request's embeddings have (prompt and negative alike),
    with its textual-inversion embeddings (``used``) counted as their vectors."""
    if pipeline_family(pipe) == "sdxl":
        return 1
    try:
        from workers.imaging.prompts import tokenize_weighted
    except ImportError:  # pragma: no cover
        return 1
    texts = (strip_lora_tags(req.prompt), strip_lora_tags(req.negative_prompt))
    tokenizer = pipe.tokenizer
    if used:
        tokenizer, tokens = token_pool(tokenizer, sum(e.n_vectors for e in used))
        rewrite = embedding_text(used, tokens)
        texts = (rewrite(texts[0]), rewrite(texts[1]))
    return max(len(tokenize_weighted(tokenizer, text)) for text in texts)
