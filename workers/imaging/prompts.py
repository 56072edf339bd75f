"""A1111-compatible prompts: attention weights, BREAK, LoRA tags, embeddings, long-prompt encoding.

The syntax follows AUTOMATIC1111's ``modules/prompt_parser.py`` (``parse_prompt_attention``) and the
encoding follows its ``sd_hijack_clip.py``: prompts are cut into chunks of 75 tokens (77 with the
start and end tokens), each chunk goes through the text encoder on its own, the hidden states are
multiplied by the per-token weights and rescaled to the original mean ("Original" emphasis), and
the chunks are concatenated along the sequence axis. The result is passed to a diffusers pipeline
as ``prompt_embeds`` / ``negative_prompt_embeds`` (plus the pooled embeddings for SDXL);
:func:`encode_for_pipeline` builds those keyword arguments for either family.

Typical use in a generation task::

    prompt, loras = extract_loras(prompt)          # activate them with pipe.set_adapters(...)
    kwargs = encode_for_pipeline(pipe, prompt, negative_prompt, clip_skip=clip_skip)
    images = pipe(**kwargs, num_inference_steps=steps, ...).images

Deliberate differences from A1111, all in the encoder (the parser matches it exactly):

* ``BREAK`` inside brackets still starts a new chunk. A1111 multiplies the marker's weight by the
  bracket and then no longer recognises it, so ``(a BREAK b)`` sends the word "break" with weight
  -1.1 to the encoder; that is a quirk nobody relies on.
* The "Original" emphasis restores the mean per prompt and per chunk, computed in float32. A1111
  takes the mean over the whole batch in the model's dtype, which makes an image depend on which
  other prompts were in its batch. When a chunk's mean is only float noise (below
  ``MEAN_NOISE_FLOOR`` of its mean magnitude, or changes sign) it is not restored: A1111 would
  divide noise by noise there. Real CLIP encoders have clearly non-zero means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: parsing must stay cheap for web processes.
    import torch

__all__ = [
    "EMPHASIS_MODES",
    "PromptChunk",
    "PromptSyntaxError",
    "encode_for_pipeline",
    "encode_weighted",
    "encode_weighted_batch",
    "encode_weighted_sdxl",
    "encode_weighted_sdxl_batch",
    "extract_embeddings",
    "extract_loras",
    "parse_prompt_attention",
    "replace_embeddings",
    "tokenize_weighted",
]

ROUND_BRACKET_MULTIPLIER = 1.1
SQUARE_BRACKET_MULTIPLIER = 1 / 1.1
CHUNK_LENGTH = 75  # prompt tokens per chunk; the encoder sees 77 with the start and end tokens
COMMA_PADDING_BACKTRACK = 20  # A1111's default for opts.comma_padding_backtrack
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")  # A1111's opts.emphasis choices
MEAN_NOISE_FLOOR = 1e-4  # a chunk mean below this share of the mean magnitude is not restored

# The token alternatives of A1111's re_attention, in the same order (order decides the match).
_RE_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
# A1111's extra-network syntax (modules/extra_networks.py): <kind:arg1:arg2...>
_RE_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
_LORA_KINDS = frozenset({"lora", "lyco"})


class PromptSyntaxError(ValueError):
    """A prompt that cannot be parsed; the message says where and why."""


# --------------------------------------------------------------------------------------------
# Attention syntax
# --------------------------------------------------------------------------------------------


def _parse(text: str) -> list[list[Any]]:
    """A1111's parse loop before merging: ``[text, weight, is_break]`` per fragment."""
    res: list[list[Any]] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _RE_ATTENTION.finditer(text):
        token = m.group(0)
        weight = m.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0, False])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            try:
                value = float(weight)
            except ValueError:
                raise PromptSyntaxError(
                    f"invalid attention weight {weight!r} at character {m.start() + 1}: "
                    "write a number such as (word:1.2)"
                ) from None
            multiply_range(round_brackets.pop(), value)
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_BRACKET_MULTIPLIER)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE_BRACKET_MULTIPLIER)
        else:
            for i, part in enumerate(_RE_BREAK.split(token)):
                if i > 0:
                    res.append(["BREAK", -1, True])
                res.append([part, 1.0, False])

    # Unclosed brackets apply to everything after them, as in A1111.
    for pos in round_brackets:
        multiply_range(pos, ROUND_BRACKET_MULTIPLIER)
    for pos in square_brackets:
        multiply_range(pos, SQUARE_BRACKET_MULTIPLIER)

    if not res:
        res = [["", 1.0, False]]
    return res


def parse_prompt_attention(text: str) -> list[list[Any]]:
    """Split a prompt into ``[text, weight]`` pairs exactly as A1111's ``parse_prompt_attention``.

    ``(x)`` multiplies by 1.1, ``[x]`` divides by 1.1, ``(x:1.3)`` multiplies by 1.3, nesting
    multiplies, ``\\( \\) \\[ \\] \\\\`` are literals, unbalanced brackets extend to the end of the
    prompt, ``BREAK`` becomes ``["BREAK", -1]`` and adjacent fragments of equal weight are merged.

    >>> parse_prompt_attention('an (important) word')
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]
    """
    res = [[fragment, weight] for fragment, weight, _ in _parse(text)]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


def _fragments(text: str, emphasis: str) -> list[tuple[str, float, bool]]:
    """``(text, weight, is_break)`` fragments for the encoder; BREAK markers never merge."""
    if emphasis == "None":  # A1111: the line is not parsed at all, BREAK included
        return [(text, 1.0, False)]
    res = _parse(text)
    i = 0
    while i + 1 < len(res):
        a, b = res[i], res[i + 1]
        if not a[2] and not b[2] and a[1] == b[1]:
            a[0] += b[0]
            res.pop(i + 1)
        else:
            i += 1
    return [(t, float(w), brk) for t, w, brk in res]


# --------------------------------------------------------------------------------------------
# Extra networks and embeddings
# --------------------------------------------------------------------------------------------


def extract_loras(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Remove ``<lora:name:weight>`` tags; return the prompt without them and ``[(name, weight)]``.

    ``<lora:name>`` has weight 1.0. As in A1111 the tag's first number is the multiplier, and
    ``te=``/``unet=`` named arguments are accepted (``te`` first). ``lyco`` is an alias of ``lora``.
    A name given twice keeps its first position and the last weight. Other extra-network tags
    (``<hypernet:...>``) are left in place. The text around a removed tag is left as it is.
    """
    found: dict[str, float] = {}

    def take(m: re.Match[str]) -> str:
        if m.group(1).lower() not in _LORA_KINDS:
            return m.group(0)
        items = m.group(2).split(":")
        positional = [item for item in items if "=" not in item]
        named = dict(item.split("=", 1) for item in items if "=" in item)
        name = positional[0].strip() if positional else ""
        if not name:
            raise PromptSyntaxError(f"{m.group(0)!r} has no LoRA name")
        raw = positional[1] if len(positional) > 1 else named.get("te", named.get("unet", "1"))
        try:
            weight = float(raw)
        except ValueError:
            raise PromptSyntaxError(
                f"{m.group(0)!r}: the weight {raw.strip()!r} is not a number"
            ) from None
        found[name] = weight
        return ""

    stripped = _RE_EXTRA_NETWORK.sub(take, prompt)
    return stripped, list(found.items())


def _embedding_matches(prompt: str, names: Iterable[str]) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of every use of a name in the prompt, in text order."""
    text = _RE_EXTRA_NETWORK.sub(lambda m: " " * len(m.group(0)), prompt)
    found: list[tuple[int, int, str]] = []
    for name in sorted(dict.fromkeys(n for n in names if n), key=len, reverse=True):
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
        for m in list(pattern.finditer(text)):
            found.append((m.start(), m.end(), name))
            text = text[: m.start()] + " " * len(m.group(0)) + text[m.end() :]
    return sorted(found)


def extract_embeddings(prompt: str, known_names: Iterable[str]) -> list[str]:
    """Names from ``known_names`` (textual-inversion embeddings) that the prompt uses.

    A name counts when it stands on its own (no letter or digit right before or after it),
    compared without case as CLIP's tokenizer lowercases; it may sit inside attention brackets.
    Longer names are matched first and consume their text, as A1111's token matching does, so
    ``bad-hands-5`` does not also count as ``hands``. Names inside extra-network tags
    (``<lora:name>``) do not count. Result: the names as given, in order of first use.
    """
    return list(dict.fromkeys(name for _, _, name in _embedding_matches(prompt, known_names)))


def replace_embeddings(prompt: str, replacements: Mapping[str, str]) -> str:
    """The prompt with each use of an embedding name replaced, matched as :func:`extract_embeddings`
    matches (on its own, without case, longest name first, not inside ``<lora:...>`` tags)."""
    parts: list[str] = []
    position = 0
    for start, end, name in _embedding_matches(prompt, replacements):
        parts += [prompt[position:start], replacements[name]]
        position = end
    return "".join(parts) + prompt[position:]


# --------------------------------------------------------------------------------------------
# Tokenizing into 77-token chunks
# --------------------------------------------------------------------------------------------


@dataclass
class PromptChunk:
    """One encoder input: start token, up to 75 prompt tokens, end token, padding (77 in all)."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    length: int = 0  # prompt tokens in this chunk, without start/end/padding


def _expand_multi_vector_embeddings(text: str, tokenizer: Any) -> str:
    """Diffusers' textual-inversion expansion: ``name`` → ``name name_1 name_2`` for multi-vector.

    Unlike diffusers' ``maybe_convert_prompt`` the name is found without case: CLIP's tokenizer
    matches an added token in the lowercased text, so ``BadHand`` registered by
    ``load_textual_inversion`` is used for ``badhand`` and ``BadHand`` alike, and each of its
    vectors must be too. One pass, longest name first, so a name is never expanded twice.
    """
    added = getattr(tokenizer, "added_tokens_encoder", None)
    if not added or not text:
        return text
    bases = [token for token in added if f"{token}_1" in added]
    if not bases:
        return text
    present = {token.lower() for token in tokenizer.tokenize(text)}
    expansions: dict[str, str] = {}
    for base in bases:
        if base.lower() in present:
            count = 1
            while f"{base}_{count}" in added:
                count += 1
            expansions[base.lower()] = " ".join([base, *(f"{base}_{i}" for i in range(1, count))])
    if not expansions:
        return text
    pattern = re.compile(
        "|".join(re.escape(b) for b in sorted(expansions, key=len, reverse=True)), re.IGNORECASE
    )
    return pattern.sub(lambda m: expansions[m.group(0).lower()], text)


def _special_ids(tokenizer: Any) -> tuple[int, int, int]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError("the tokenizer needs start and end tokens (a CLIP tokenizer)")
    pad = tokenizer.pad_token_id
    return bos, eos, eos if pad is None else pad


def _chunk_length(tokenizer: Any) -> int:
    max_length = getattr(tokenizer, "model_max_length", None)
    if isinstance(max_length, int) and 3 <= max_length < CHUNK_LENGTH + 2:
        return max_length - 2
    return CHUNK_LENGTH


def tokenize_weighted(
    tokenizer: Any,
    prompt: str,
    *,
    emphasis: str = "Original",
    comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK,
) -> list[PromptChunk]:
    """Cut a prompt into weighted 77-token chunks as A1111's ``tokenize_line`` does.

    Each fragment of :func:`parse_prompt_attention` is tokenized on its own; ``BREAK`` closes the
    current chunk; a chunk that fills up moves the words after its last comma (when that comma is
    at most ``comma_padding_backtrack`` tokens back) to the next chunk. Chunks are padded with the
    tokenizer's pad token after the end token, like diffusers' ``padding="max_length"``.
    """
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(
            f"unknown emphasis {emphasis!r}; choose one of {', '.join(EMPHASIS_MODES)}"
        )
    bos, eos, pad = _special_ids(tokenizer)
    chunk_length = _chunk_length(tokenizer)
    comma_token = tokenizer.get_vocab().get(",</w>")

    fragments = _fragments(prompt, emphasis)
    texts = [_expand_multi_vector_embeddings(t, tokenizer) for t, _, brk in fragments if not brk]
    encoded = (
        tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
        if texts
        else []
    )
    token_lists = iter(encoded)

    chunks: list[PromptChunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def next_chunk() -> None:
        nonlocal tokens, weights, last_comma
        n = len(tokens)
        rest = chunk_length - n
        chunks.append(
            PromptChunk(
                tokens=[bos, *tokens, eos] + [pad] * rest,
                weights=[1.0, *weights, 1.0] + [1.0] * rest,
                length=n,
            )
        )
        tokens, weights, last_comma = [], [], -1

    for _text, weight, is_break in fragments:
        if is_break:
            next_chunk()
            continue
        if emphasis == "Ignore":
            weight = 1.0
        for token in next(token_lists):
            if token == comma_token:
                last_comma = len(tokens)
            elif (
                comma_padding_backtrack
                and len(tokens) == chunk_length
                and last_comma != -1
                and len(tokens) - last_comma <= comma_padding_backtrack
            ):
                cut = last_comma + 1
                moved_tokens, moved_weights = tokens[cut:], weights[cut:]
                tokens, weights = tokens[:cut], weights[:cut]
                next_chunk()
                tokens, weights = moved_tokens, moved_weights
            if len(tokens) == chunk_length:
                next_chunk()
            tokens.append(token)
            weights.append(weight)

    if tokens or not chunks:
        next_chunk()
    return chunks


def _empty_chunk(tokenizer: Any) -> PromptChunk:
    bos, eos, pad = _special_ids(tokenizer)
    n = _chunk_length(tokenizer)
    return PromptChunk(tokens=[bos, eos] + [pad] * n, weights=[1.0] * (n + 2), length=0)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _check_batch(
    prompts: Sequence[str], negative_prompts: Sequence[str] | None, clip_skip: int
) -> list[str]:
    if negative_prompts is None:
        negative_prompts = [""] * len(prompts)
    if len(negative_prompts) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(negative_prompts)} negative prompts")
    if not prompts:
        raise ValueError("no prompts to encode")
    if clip_skip < 1:
        raise ValueError("clip_skip counts from 1 (the last layer), as in A1111")
    return [n or "" for n in negative_prompts]


def _is_two_encoder(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def _text_side(pipe_or_pair: Any) -> tuple[Any, Any, Any]:
    """``(tokenizer, text_encoder, device)`` from a pipeline or a ``(tokenizer, encoder)`` pair."""
    if isinstance(pipe_or_pair, tuple | list):
        tokenizer, text_encoder = pipe_or_pair
        return tokenizer, text_encoder, text_encoder.device
    if _is_two_encoder(pipe_or_pair):
        raise NotImplementedError(
            "an SDXL pipeline has two text encoders and pooled embeddings: "
            "use encode_weighted_sdxl or encode_for_pipeline"
        )
    tokenizer = getattr(pipe_or_pair, "tokenizer", None)
    text_encoder = getattr(pipe_or_pair, "text_encoder", None)
    if tokenizer is None or text_encoder is None:
        raise ValueError(
            "need a pipeline with .tokenizer and .text_encoder, or a (tokenizer, encoder) pair"
        )
    return tokenizer, text_encoder, _device(pipe_or_pair, text_encoder)


def _device(pipe: Any, text_encoder: Any) -> Any:
    return getattr(pipe, "_execution_device", None) or text_encoder.device


def _apply_emphasis(z: torch.Tensor, chunks: Sequence[PromptChunk], emphasis: str) -> torch.Tensor:
    import torch

    if emphasis not in ("Original", "No norm"):
        return z
    weights = torch.tensor([c.weights for c in chunks], dtype=torch.float32, device=z.device)
    rows = (weights != 1.0).any(dim=1)
    if not bool(rows.any()):
        return z
    zf = z[rows].float()
    weighted = zf * weights[rows].unsqueeze(-1)
    if emphasis == "Original":
        # Restore each chunk's mean: A1111 says this is "likely not correct, but it seems to work
        # well to prevent artifacts"; users' prompts are tuned for it. A mean that is only float
        # noise (an encoder whose final norm has no bias, e.g. a fresh one) makes the ratio
        # arbitrary, even negative: then the weights are applied without the restore.
        old_mean = zf.mean(dim=(1, 2), keepdim=True)
        new_mean = weighted.mean(dim=(1, 2), keepdim=True)
        noise = MEAN_NOISE_FLOOR * zf.abs().mean(dim=(1, 2), keepdim=True)
        usable = (old_mean.abs() > noise) & (new_mean.abs() > noise) & (old_mean * new_mean > 0)
        ratio = torch.where(usable, old_mean / new_mean, torch.ones_like(new_mean))
        weighted = weighted * ratio
    z = z.clone()
    z[rows] = weighted.to(z.dtype)
    return z


def _encode_chunks(
    text_encoder: Any,
    chunks: Sequence[PromptChunk],
    *,
    device: Any,
    layer: int | None,
    final_norm: bool,
    emphasis: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run chunks through the encoder as one batch; ``(hidden (n, 77, dim), first output)``.

    ``layer`` None takes the last hidden state; otherwise that index of ``hidden_states``,
    through the final layer norm when ``final_norm`` (A1111's clip skip for SD 1.x/2.x).
    """
    import torch

    ids = torch.tensor([c.tokens for c in chunks], dtype=torch.long, device=device)
    kwargs: dict[str, Any] = {}
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = torch.zeros_like(ids)
        for row, c in enumerate(chunks):
            mask[row, : c.length + 2] = 1
        kwargs["attention_mask"] = mask
    out = text_encoder(ids, output_hidden_states=layer is not None, **kwargs)
    if layer is None:
        z = out[0]
    else:
        z = out.hidden_states[layer]
        if final_norm:
            # transformers v5 moved CLIPTextModel's layers up from .text_model; v4 has them there.
            z = getattr(text_encoder, "text_model", text_encoder).final_layer_norm(z)
    return _apply_emphasis(z, chunks, emphasis), out[0]


def _encode_texts(
    tokenizer: Any,
    text_encoder: Any,
    texts: Sequence[str],
    *,
    n_chunks: int | None,
    device: Any,
    layer: int | None,
    final_norm: bool,
    emphasis: str,
    comma_padding_backtrack: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hidden (len(texts), 77 * n, dim), first output of each text's first chunk)``.

    One encoder call per text (its chunks as the batch), never one call for the whole batch: a
    text's embedding then depends only on the text and its chunk count, so a request gives the
    same image whether or not it was batched with others, and a short prompt gives exactly what
    the pipeline's own ``encode_prompt`` gives.
    """
    import torch

    per_text = [
        tokenize_weighted(
            tokenizer, text, emphasis=emphasis, comma_padding_backtrack=comma_padding_backtrack
        )
        for text in texts
    ]
    n = max(n_chunks or 0, *(len(chunks) for chunks in per_text))
    empty = _empty_chunk(tokenizer)
    hidden, first = [], []
    with torch.no_grad():
        for chunks in per_text:
            padded = [*chunks, *[empty] * (n - len(chunks))]
            z, out0 = _encode_chunks(
                text_encoder,
                padded,
                device=device,
                layer=layer,
                final_norm=final_norm,
                emphasis=emphasis,
            )
            hidden.append(z.reshape(1, -1, z.shape[-1]))
            first.append(out0[:1])
    return torch.cat(hidden), torch.cat(first)


def _count_chunks(tokenizer: Any, texts: Sequence[str], emphasis: str, backtrack: int) -> int:
    return max(
        len(tokenize_weighted(tokenizer, t, emphasis=emphasis, comma_padding_backtrack=backtrack))
        for t in texts
    )


def encode_weighted_batch(
    pipe_or_pair: Any,
    prompts: Sequence[str],
    negative_prompts: Sequence[str] | None = None,
    *,
    clip_skip: int = 1,
    emphasis: str = "Original",
    comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK,
    device: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode several prompts and their negatives: two ``(batch, 77 * chunks, dim)`` tensors.

    Every prompt and negative is padded with empty chunks to the longest one in the call, so the
    two tensors can go to one pipeline call. ``clip_skip`` uses A1111's numbering: 1 is the last
    layer, 2 the one before (diffusers' ``clip_skip=1``). Strip ``<lora:...>`` tags first with
    :func:`extract_loras`.
    """
    negatives = _check_batch(prompts, negative_prompts, clip_skip)
    tokenizer, text_encoder, default_device = _text_side(pipe_or_pair)
    device = device or default_device
    z, _ = _encode_texts(
        tokenizer,
        text_encoder,
        [*prompts, *negatives],
        n_chunks=None,
        device=device,
        layer=None if clip_skip == 1 else -clip_skip,
        final_norm=True,
        emphasis=emphasis,
        comma_padding_backtrack=comma_padding_backtrack,
    )
    z = z.to(dtype=text_encoder.dtype, device=device)
    return z[: len(prompts)], z[len(prompts) :]


def encode_weighted(
    pipe_or_pair: Any,
    prompt: str,
    negative_prompt: str = "",
    *,
    clip_skip: int = 1,
    emphasis: str = "Original",
    comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK,
    device: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A1111-weighted ``(prompt_embeds, negative_prompt_embeds)`` for a Stable Diffusion pipeline.

    Pass them as ``pipe(prompt_embeds=..., negative_prompt_embeds=...)``; both are ``(1, 77 * n,
    dim)`` with the same ``n``. With every weight 1.0 and a prompt under 76 tokens they equal
    ``pipe.encode_prompt``'s output.
    """
    return encode_weighted_batch(
        pipe_or_pair,
        [prompt],
        [negative_prompt or ""],
        clip_skip=clip_skip,
        emphasis=emphasis,
        comma_padding_backtrack=comma_padding_backtrack,
        device=device,
    )


def encode_weighted_sdxl_batch(
    pipe: Any,
    prompts: Sequence[str],
    negative_prompts: Sequence[str] | None = None,
    *,
    clip_skip: int = 1,
    emphasis: str = "Original",
    comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK,
    device: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SDXL version of :func:`encode_weighted_batch`, in diffusers' ``encode_prompt`` order:
    ``(prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds)``.

    Each encoder's penultimate layer (``clip_skip`` 2 takes one more back) gets its own weights
    and mean restore, as in A1111, and the two are joined along the feature axis; the pooled
    embedding is the second encoder's output for the first chunk. An empty negative prompt gives
    zeros when the pipeline's ``force_zeros_for_empty_prompt`` is set, as both A1111 and diffusers
    do. A refiner (no first encoder) uses the second encoder alone.
    """
    import torch

    negatives = _check_batch(prompts, negative_prompts, clip_skip)
    pairs = [
        (tok, enc)
        for tok, enc in (
            (getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)),
            (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)),
        )
        if tok is not None and enc is not None
    ]
    if not _is_two_encoder(pipe):
        raise ValueError("encode_weighted_sdxl needs a pipeline with text_encoder_2 (SDXL)")
    final_encoder = pipe.text_encoder_2
    device = device or _device(pipe, final_encoder)
    zero_negative = bool(
        getattr(getattr(pipe, "config", None), "force_zeros_for_empty_prompt", False)
    )
    texts = [*prompts, *negatives]
    n_chunks = max(_count_chunks(tok, texts, emphasis, comma_padding_backtrack) for tok, _ in pairs)

    hidden, pooled = [], None
    for tokenizer, text_encoder in pairs:
        z, first = _encode_texts(
            tokenizer,
            text_encoder,
            texts,
            n_chunks=n_chunks,
            device=device,
            layer=-(clip_skip + 1),
            final_norm=False,
            emphasis=emphasis,
            comma_padding_backtrack=comma_padding_backtrack,
        )
        hidden.append(z)
        pooled = first  # the last pair is the second encoder: its projected pooled output
    z = torch.cat(hidden, dim=-1).to(dtype=final_encoder.dtype, device=device)
    assert pooled is not None  # torch.cat above has raised when no encoder pair ran
    pooled = pooled.to(dtype=final_encoder.dtype, device=device)

    b = len(prompts)
    embeds, negative, pooled_embeds, negative_pooled = z[:b], z[b:], pooled[:b], pooled[b:]
    if zero_negative:
        empty = torch.tensor([not n for n in negatives], device=device)
        if bool(empty.any()):
            negative = torch.where(empty[:, None, None], torch.zeros_like(negative), negative)
            negative_pooled = torch.where(
                empty[:, None], torch.zeros_like(negative_pooled), negative_pooled
            )
    return embeds, negative, pooled_embeds, negative_pooled


def encode_weighted_sdxl(
    pipe: Any,
    prompt: str,
    negative_prompt: str = "",
    *,
    clip_skip: int = 1,
    emphasis: str = "Original",
    comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK,
    device: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A1111-weighted SDXL embeddings for one prompt; see :func:`encode_weighted_sdxl_batch`."""
    return encode_weighted_sdxl_batch(
        pipe,
        [prompt],
        [negative_prompt or ""],
        clip_skip=clip_skip,
        emphasis=emphasis,
        comma_padding_backtrack=comma_padding_backtrack,
        device=device,
    )


def encode_for_pipeline(
    pipe: Any,
    prompts: str | Sequence[str],
    negative_prompts: str | Sequence[str] | None = None,
    **options: Any,
) -> dict[str, torch.Tensor]:
    """Weighted embeddings as keyword arguments for ``pipe(**kwargs)``, SD or SDXL alike.

    ``options`` are those of :func:`encode_weighted_batch` (``clip_skip``, ``emphasis``, ...).
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(negative_prompts, str):
        negative_prompts = [negative_prompts]
    if _is_two_encoder(pipe):
        embeds, negative, pooled, negative_pooled = encode_weighted_sdxl_batch(
            pipe, prompts, negative_prompts, **options
        )
        return {
            "prompt_embeds": embeds,
            "negative_prompt_embeds": negative,
            "pooled_prompt_embeds": pooled,
            "negative_pooled_prompt_embeds": negative_pooled,
        }
    embeds, negative = encode_weighted_batch(pipe, prompts, negative_prompts, **options)
    return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}
