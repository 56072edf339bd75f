"""Textual inversion: the vectors of a new word learned (diffusers' textual_inversion recipe),
trained through the very code path generation uses for embeddings.

The platform writes an embedding's name in a prompt as private tokens whose lookup returns the
embedding's vectors (:func:`workers.imaging.pipeline.embeddings_applied`). Training does the same
with the vectors as a trainable tensor: the caption ``name, caption`` is tokenized and encoded
exactly as a prompt using the finished embedding will be, the text encoder's and UNet's weights
stay frozen, and only the vectors change (no resized vocabulary, no rows to restore after each
step). The file holds ``emb_params`` [n, width] (A1111's safetensors layout): the platform uses it
by its name, and a plain diffusers script with ``pipe.load_textual_inversion(path, token=name)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workers.imaging.training.base import Base, denoising_loss, load_base
from workers.imaging.training.config import TextualInversionConfig
from workers.imaging.training.data import Example, LatentPool, caption_with, load_pixels
from workers.imaging.training.loop import TrainResult, finished_result, train_loop
from workers.ml.checkpoints import CheckpointStore
from workers.ml.reporting import NullReporter, Reporter

__all__ = ["EMBEDDING_KEY", "train_textual_inversion"]

EMBEDDING_KEY = "emb_params"
SAMPLES_DIR = "samples"


def initial_vectors(base: Base, word: str, n: int) -> tuple[Any, list[str]]:
    """`n` copies of the initializer word's token embedding (the mean of its tokens when the
    tokenizer splits it), fp32 on the CPU, and the word's tokens."""
    tokenizer, encoder = base.pipe.tokenizer, base.pipe.text_encoder
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if not ids:
        raise ValueError(f"the initializer word {word!r} has no tokens")
    table = encoder.get_input_embeddings().weight.detach().float().cpu()
    vector = table[ids].mean(0, keepdim=True)
    return vector.repeat(n, 1).clone(), tokenizer.convert_ids_to_tokens(ids)


def training_text(name: str, caption: str) -> str:
    """The caption a run trains on: as written when it already uses the name, else ``name, caption``."""
    from workers.imaging.prompts import extract_embeddings

    if extract_embeddings(caption, [name]):
        return caption
    return caption_with(name, caption)


class EmbeddingTrainee:
    """The new word's vectors, [num_vectors, width], fp32."""

    def __init__(
        self, base: Base, config: TextualInversionConfig, pool: LatentPool, texts: Sequence[str]
    ) -> None:
        import torch

        self.base, self.config, self.pool, self.texts = base, config, pool, list(texts)
        start, self.init_tokens = initial_vectors(base, config.initializer, config.num_vectors)
        self.vectors = torch.nn.Parameter(start.to(base.device))
        self.params = [self.vectors]
        self.samples_dir: Path | None = None

    def _embedding(self) -> Any:
        from workers.imaging.pipeline.embeddings import Embedding

        return Embedding(self.config.token, {"clip": self.vectors}, short_hash="")

    def encode(self, texts: Sequence[str]) -> Any:
        """Hidden states of `texts` with the name standing for the current vectors (differentiable)."""
        from workers.imaging.pipeline import embeddings_applied

        pipe = self.base.pipe
        with embeddings_applied(pipe, [self._embedding()]) as write:
            tokenizer = pipe.tokenizer  # the copy that knows the private tokens
            ids = tokenizer(
                [write(t) for t in texts],
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            with self.base.autocast():
                return pipe.text_encoder(ids.to(self.base.device), return_dict=False)[0]

    def loss(self, indices: Sequence[int], generator: Any) -> Any:
        latents = self.pool.draw(indices, generator)
        hidden = self.encode([self.texts[i] for i in indices])
        return denoising_loss(self.base, latents, hidden, generator)

    def trained(self) -> dict[str, Any]:
        return {EMBEDDING_KEY: self.vectors}

    def load_trained(self, tensors: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            self.vectors.copy_(tensors[EMBEDDING_KEY].to(self.vectors.device, self.vectors.dtype))

    def after_step(self) -> None:
        pass

    def write(self, path: Path) -> Path:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({EMBEDDING_KEY: self.vectors.detach().float().cpu().contiguous()}, tmp)
        os.replace(tmp, path)
        return path

    def samples(self, prompts: Sequence[str]) -> list[Any]:
        from workers.imaging.training.samples import render_samples

        c = self.config
        folder = self.samples_dir or Path(".")
        # Generation reads embeddings from files: the vectors as they are at this step.
        current = self.write(folder / f"{c.token}.safetensors")
        return render_samples(
            self.base.pipe,
            prompts,
            resolution=c.resolution,
            steps=c.sample_steps,
            cfg_scale=c.sample_cfg_scale,
            seed=c.seed,
            embeddings=[(c.token, str(current))],
        )

    def export(self, folder: Path) -> Path:
        return self.write(folder / "embedding" / f"{self.config.token}.safetensors")


def train_textual_inversion(
    config: TextualInversionConfig,
    *,
    base_model_dir: str | os.PathLike[str],
    examples: Sequence[Example],
    output_dir: str | os.PathLike[str],
    reporter: Reporter | None = None,
    checkpoints: CheckpointStore | None = None,
    device: str = "auto",
    single_file_config: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Learn the vectors of `config.token` from `examples`; resume from `checkpoints` (default:
    output_dir/checkpoints).

    Leaves ``output_dir/embedding/<token>.safetensors`` and ``result.json``. A run that already
    finished there returns its result; when the reporter asks to stop, a checkpoint is written
    and the result's status is ``cancelled``.
    """
    output = Path(output_dir)
    reporter = reporter or NullReporter()
    done = finished_result(output)
    if done is not None:
        return done
    store = checkpoints or CheckpointStore(output / "checkpoints")
    base = load_base(base_model_dir, config, device=device, single_file_config=single_file_config)
    vocab = base.pipe.tokenizer.get_vocab()
    if config.token in vocab or config.token.lower() in vocab:
        reporter.log(
            f"{config.token!r} is a word of this model's tokenizer: the platform uses the "
            "embedding by name all the same, but a plain diffusers script must load it under "
            "another token",
            "warning",
        )
    texts = [training_text(config.token, e.caption) for e in examples]
    pool = LatentPool(
        base.pipe.vae, load_pixels(examples, config.resolution), flip=config.random_flip
    )
    trainee = EmbeddingTrainee(base, config, pool, texts)
    trainee.samples_dir = output / SAMPLES_DIR
    reporter.log(
        f"{config.num_vectors} vector(s) for {config.token!r} from {config.initializer!r} "
        f"({' '.join(trainee.init_tokens)}), {len(examples)} images at {config.resolution} px, "
        f"{config.steps} steps on {base.device.type}"
    )
    return train_loop(
        config, trainee, size=len(examples), output_dir=output, reporter=reporter, checkpoints=store
    )
