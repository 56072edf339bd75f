"""Textual-inversion embeddings by name, without changing the loaded pipeline.

Not diffusers' load_textual_inversion/unload_textual_inversion: on an SD-sized text encoder
(49,408 tokens) that pair took 2-4 s per request on CPU (mean-resizing the embedding matrix,
rebuilding the fast tokenizer), its unload left a multi-vector embedding's extra tokens behind
and the encoder's vocab_size enlarged, and a name is only an added token (vocabulary clashes,
case, words inside words). Instead an embedding's vectors are written into the prompt as private
tokens (:data:`EMBEDDING_TOKEN`) known only to a cached copy of the tokenizer
(:func:`token_pool`), and while the prompt is encoded (:func:`embeddings_applied`) the text
encoder's token lookup returns the vectors for those ids. The loaded pipeline's tokenizer,
weights and config are never changed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.imaging.pipeline.batch_invariance import forward_patch_lock, restore_forwards
from workers.imaging.pipeline.loading import (
    FAMILY_NAMES,
    ModelRefused,
    pipeline_family,
    refuse_pickle,
)
from workers.imaging.pipeline.request import GenerationRequest

MAX_EMBEDDING_VECTORS = 75  # one prompt chunk; A1111 cannot use a longer embedding either
EMBEDDING_TOKEN = "<atelier-ti-{}>"  # the private tokens an embedding's vectors are written as


@dataclass
class Embedding:
    """One textual-inversion file: its vectors per text encoder and A1111's short hash."""

    name: str
    vectors: dict[str, Any]  # "clip" (SD 1.x/2.x) or "clip_l"/"clip_g" (SDXL) → (n, width)
    short_hash: str  # the first 12 hex digits of the file's sha256, as A1111's "TI hashes"

    @property
    def n_vectors(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])


def read_embedding(name: str, path: str) -> Embedding:
    """An embedding file's vectors (A1111 ``emb_params``/``string_to_param``, diffusers
    ``{token: vectors}``, SDXL ``clip_l``/``clip_g``); pickle and other files refused."""
    source = Path(path).expanduser()
    refuse_pickle(source)
    if source.suffix.lower() != ".safetensors" or not source.is_file():
        raise ModelRefused(f"embedding {name}: {source} is not a .safetensors file")
    stat = source.stat()
    return _read_embedding_file(name, str(source.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)  # the same few negative embeddings come with most requests
def _read_embedding_file(name: str, path: str, _mtime_ns: int, _size: int) -> Embedding:
    from safetensors.torch import load

    data = Path(path).read_bytes()
    try:
        state = load(data)
    except Exception as exc:  # noqa: BLE001 - a broken or non-safetensors file
        raise ModelRefused(f"embedding {name}: not a readable safetensors file ({exc})") from exc
    vectors: dict[str, Any]
    key: str | None
    if "clip_l" in state or "clip_g" in state:
        vectors = {k: state[k] for k in ("clip_l", "clip_g") if k in state}
    else:
        key = next((k for k in ("emb_params", "string_to_param.*") if k in state), None)
        if key is None and len(state) == 1:  # diffusers: {"<token>": vectors}
            key = next(iter(state))
        if key is None:
            raise ModelRefused(
                f"embedding {name}: not a textual-inversion embedding (no emb_params, "
                f"clip_l/clip_g or single tensor; found {', '.join(sorted(state)[:6])})"
            )
        vectors = {"clip": state[key]}
    for key, value in vectors.items():
        if value.ndim == 1:
            value = value[None]
        if (
            value.ndim != 2
            or not value.is_floating_point()
            or not 1 <= value.shape[0] <= MAX_EMBEDDING_VECTORS
        ):
            raise ModelRefused(
                f"embedding {name}: {key} must be 1..{MAX_EMBEDDING_VECTORS} vectors "
                f"(a float tensor [n, width]), not {value.dtype} {list(value.shape)}"
            )
        vectors[key] = value
    if len({v.shape[0] for v in vectors.values()}) != 1:
        raise ModelRefused(f"embedding {name}: clip_l and clip_g have different vector counts")
    return Embedding(name, vectors, hashlib.sha256(data).hexdigest()[:12])


def _text_encoders(pipe: Any) -> list[tuple[str, str, str]]:
    """``(tokenizer attribute, text encoder attribute, embedding key)`` of the pipeline's CLIPs."""
    if pipeline_family(pipe) == "sdxl":
        pairs = [
            ("tokenizer", "text_encoder", "clip_l"),
            ("tokenizer_2", "text_encoder_2", "clip_g"),
        ]
    else:
        pairs = [("tokenizer", "text_encoder", "clip")]
    return [
        p
        for p in pairs
        if getattr(pipe, p[0], None) is not None and getattr(pipe, p[1], None) is not None
    ]


def _check_fits(pipe: Any, embedding: Embedding) -> None:
    family = pipeline_family(pipe)
    for _, encoder_name, key in _text_encoders(pipe):
        vectors = embedding.vectors.get(key)
        if vectors is None:
            if family == "sd":
                reason = "it is an SDXL embedding (clip_l/clip_g vectors)"
            elif "clip" in embedding.vectors:
                reason = "it is an SD 1.x/2.x embedding (no clip_l/clip_g vectors)"
            else:
                reason = f"it has no {key} vectors"
            raise ModelRefused(
                f"embedding {embedding.name}: {reason}; this is a {FAMILY_NAMES[family]} model"
            )
        width = getattr(pipe, encoder_name).get_input_embeddings().weight.shape[-1]
        if vectors.shape[-1] != width:
            raise ModelRefused(
                f"embedding {embedding.name}: vectors of width {vectors.shape[-1]}, but this "
                f"model's text encoder has width {width}: it was made for another model family"
            )


def used_embeddings(pipe: Any, req: GenerationRequest) -> list[Embedding]:
    """The request's embeddings whose names its prompt or negative prompt uses, read and checked."""
    if not req.embeddings:
        return []
    from workers.imaging.prompts import extract_embeddings

    paths = dict(req.embeddings)
    names = extract_embeddings(f"{req.prompt}\n{req.negative_prompt}", paths)
    used = [read_embedding(name, paths[name]) for name in names]
    for embedding in used:
        _check_fits(pipe, embedding)
    return used


# Per tokenizer: a copy holding the private tokens (ids right after the original vocabulary).
_token_pools: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = weakref.WeakKeyDictionary()
_token_pools_lock = threading.Lock()


def token_pool(tokenizer: Any, n: int) -> tuple[Any, list[str]]:
    """A copy of ``tokenizer`` that knows the first ``n`` private tokens, and those tokens; token
    ``i`` has id ``len(tokenizer) + i``. The copy is made once and grows as needed."""
    tokens = [EMBEDDING_TOKEN.format(i) for i in range(n)]
    size = len(tokenizer)
    with _token_pools_lock:
        entry = _token_pools.get(tokenizer)
        if entry is None or entry[0] != size:  # new, or the original tokenizer was changed
            entry = (size, copy.deepcopy(tokenizer))
            _token_pools[tokenizer] = entry
        pool = entry[1]
        have = len(pool) - size
        if n > have:
            pool.add_tokens(tokens[have:])
        ids = pool.convert_tokens_to_ids(tokens)
    if ids != list(range(size, size + n)):
        raise ModelRefused(
            "this model's tokenizer does not number added tokens after its vocabulary; "
            "textual-inversion embeddings cannot be used with it"
        )
    return pool, tokens


def embedding_text(used: Sequence[Embedding], tokens: Sequence[str]) -> Callable[[str], str]:
    """A function writing each used embedding's name in a prompt as its private tokens."""
    from workers.imaging.prompts import replace_embeddings

    replacements, start = {}, 0
    for embedding in used:
        replacements[embedding.name] = " ".join(tokens[start : start + embedding.n_vectors])
        start += embedding.n_vectors
    return lambda text: replace_embeddings(text, replacements)


def _with_rows(forward: Callable[..., Any], first_id: int, table: Any) -> Callable[..., Any]:
    """A token-embedding forward that gives ``table[id - first_id]`` for ids from ``first_id``
    (the private tokens) and the original lookup for every other id."""
    import torch

    def wrapped(input_ids, *args, **kwargs):
        extra = input_ids >= first_id
        if not bool(extra.any()):
            return forward(input_ids, *args, **kwargs)
        out = forward(input_ids.masked_fill(extra, 0), *args, **kwargs)
        index = (input_ids - first_id).clamp(0, table.shape[0] - 1)
        return torch.where(extra.unsqueeze(-1), table.to(out.dtype)[index], out)

    return wrapped


@contextlib.contextmanager
def embeddings_applied(pipe: Any, used: Sequence[Embedding]) -> Iterator[Callable[[str], str]]:
    """While inside, the pipeline encodes the embeddings' private tokens as their vectors; yields
    the function that writes a prompt's embedding names as those tokens. Restored afterwards,
    whatever happens. Only prompt encoding belongs inside (the tokenizers are swapped)."""
    if not used:
        yield lambda text: text
        return
    import torch

    n = sum(e.n_vectors for e in used)
    swapped: list[tuple[str, Any]] = []
    patched: list[tuple[Any, bool, Any]] = []
    eos_ids: list[tuple[Any, Any]] = []
    tokens: list[str] = []
    try:
        for tokenizer_name, encoder_name, key in _text_encoders(pipe):
            tokenizer, encoder = getattr(pipe, tokenizer_name), getattr(pipe, encoder_name)
            pool, tokens = token_pool(tokenizer, n)
            module = encoder.get_input_embeddings()
            weight = module.weight
            table = torch.cat([e.vectors[key] for e in used]).to(weight.device, weight.dtype)
            with forward_patch_lock:
                patched.append(
                    (module, "forward" in module.__dict__, module.__dict__.get("forward"))
                )
                module.forward = _with_rows(module.forward, len(tokenizer), table)
            # Old CLIP configs (eos_token_id 2) pool at the largest token id, which would now be
            # a private token: pool at the first end token, as without embeddings (and A1111).
            text_model = getattr(encoder, "text_model", encoder)
            eos = tokenizer.eos_token_id
            if getattr(text_model, "eos_token_id", None) == 2 and eos not in (None, 2):
                eos_ids.append((text_model, text_model.eos_token_id))
                text_model.eos_token_id = eos
            swapped.append((tokenizer_name, tokenizer))
            setattr(pipe, tokenizer_name, pool)
        yield embedding_text(used, tokens)
    finally:
        for tokenizer_name, tokenizer in reversed(swapped):
            setattr(pipe, tokenizer_name, tokenizer)
        for text_model, eos in eos_ids:
            text_model.eos_token_id = eos
        with forward_patch_lock:
            restore_forwards(patched)
