"""The bias probe: the same prompts with one attribute's group terms swapped, scored on a base
model and its fine-tuned adapters, so a team sees whether a fine-tune widened the gaps.

Probe sets are JSONL data files (probes/*.jsonl, format in probes/README.md). Per attribute and
model the report gives the log-likelihood gap of the same completions across groups, and with
generation on, the refusal and sentiment gaps of the model's answers (lexicon.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.craft.config import BiasProbeConfig
from workers.ml.craft.lexicon import is_refusal, sentiment
from workers.ml.reporting import JobCancelled, JobFailed, NullReporter, Reporter

__all__ = [
    "PROBES_DIR",
    "Probe",
    "ProbeFormatError",
    "load_probes",
    "parse_probes",
    "run_bias_probe",
    "score_model",
]

PROBES_DIR = Path(__file__).resolve().parent / "probes"
MAX_PROBES = 2000


class ProbeFormatError(JobFailed):
    """A probe line the job cannot use; the message names the file and line."""


@dataclass(frozen=True)
class Probe:
    id: str
    lang: str
    attribute: str
    template: str
    groups: dict[str, str]
    completions: tuple[str, ...]
    polarity: tuple[int, ...] = ()

    def prompt(self, group: str) -> str:
        return self.template.replace("{group}", self.groups[group])


def _probe(data: Any, where: str) -> Probe:
    def bad(reason: str) -> ProbeFormatError:
        return ProbeFormatError(f"{where}: {reason}")

    if not isinstance(data, dict):
        raise bad("expected a JSON object")
    for key in ("id", "lang", "attribute", "template"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise bad(f'"{key}" must be a non-empty string')
    unknown = sorted(
        set(data) - {"id", "lang", "attribute", "template", "groups", "completions", "polarity"}
    )
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)}")
    if "{group}" not in data["template"]:
        raise bad('"template" must contain {group}')
    groups = data.get("groups")
    if (
        not isinstance(groups, dict)
        or len(groups) < 2
        or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in groups.items())
    ):
        raise bad('"groups" must map two or more group keys to their terms')
    completions = data.get("completions")
    if (
        not isinstance(completions, list)
        or not completions
        or not all(isinstance(c, str) and c.strip() for c in completions)
    ):
        raise bad('"completions" must be a list of one or more non-empty strings')
    polarity = data.get("polarity", [])
    if not isinstance(polarity, list) or (
        polarity
        and (len(polarity) != len(completions) or any(p not in (-1, 0, 1) for p in polarity))
    ):
        raise bad('"polarity" must give -1, 0 or 1 for each completion')
    return Probe(
        id=data["id"],
        lang=data["lang"],
        attribute=data["attribute"].strip().lower(),
        template=data["template"],
        groups=dict(groups),
        completions=tuple(completions),
        polarity=tuple(int(p) for p in polarity),
    )


def parse_probes(lines: Iterable[str], *, source: str) -> list[Probe]:
    """Probes from JSONL lines (blank lines skipped); ProbeFormatError names `source` and line."""
    probes, seen = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProbeFormatError(f"{where}: not JSON ({exc.msg})") from None
        probe = _probe(data, where)
        if probe.id in seen:
            raise ProbeFormatError(f"{where}: duplicate id {probe.id!r}")
        seen.add(probe.id)
        probes.append(probe)
        if len(probes) > MAX_PROBES:
            raise ProbeFormatError(f"{source}: more than {MAX_PROBES} probes")
    return probes


def load_probes(
    *,
    language: str = "all",
    attributes: Sequence[str] = (),
    folder: str | os.PathLike[str] = PROBES_DIR,
) -> list[Probe]:
    """The shipped probes (en.jsonl, zh.jsonl) of a language ("all": both), optionally only
    some attributes; JobFailed when nothing is left."""
    languages = ("en", "zh") if language == "all" else (language,)
    probes: list[Probe] = []
    for lang in languages:
        path = Path(folder) / f"{lang}.jsonl"
        if path.is_file():
            probes += parse_probes(path.read_text(encoding="utf-8").splitlines(), source=path.name)
    known = sorted({p.attribute for p in probes})
    wanted = {a.lower() for a in attributes}
    if wanted:
        probes = [p for p in probes if p.attribute in wanted]
    if not probes:
        raise JobFailed(
            f"no probes for language {language!r} and attributes {', '.join(sorted(wanted)) or 'all'} "
            f"(known attributes: {', '.join(known)})"
        )
    return probes


# --------------------------------------------------------------------------- scoring


def _completion_logprob(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    """Mean per-token log-probability of `completion` after `prompt` (ids concatenated, so
    the completion's tokens are the same whatever the group term before them)."""
    import torch

    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if not completion_ids:
        return 0.0
    ids = torch.tensor([prompt_ids + completion_ids], device=_device(model))
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(completion_ids, device=logp.device)
    return float(logp.gather(1, target[:, None]).mean())


def _device(model: Any) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _answer(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    import torch

    from workers.ml.textgen import build_prompt

    text = build_prompt(tokenizer, prompt)
    chat = text != prompt
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=not chat)
    ids = enc["input_ids"].to(_device(model))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
        )
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


@dataclass
class ProbeScore:
    """One probe on one model: per group, the completions' log-probabilities and the answer."""

    id: str
    attribute: str
    logprobs: dict[str, list[float]]
    answers: dict[str, str] = field(default_factory=dict)
    polarity: tuple[int, ...] = ()

    def ll_gap(self) -> float:
        groups = list(self.logprobs)
        n = len(self.logprobs[groups[0]])
        gaps = [
            max(self.logprobs[g][i] for g in groups) - min(self.logprobs[g][i] for g in groups)
            for i in range(n)
        ]
        return sum(gaps) / n

    def favourability(self, group: str) -> float | None:
        if not self.polarity or not any(self.polarity):
            return None
        return sum(p * lp for p, lp in zip(self.polarity, self.logprobs[group], strict=True))


def score_model(
    model: Any,
    tokenizer: Any,
    probes: Sequence[Probe],
    config: BiasProbeConfig,
    *,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ProbeScore]:
    """Every probe on one model (log-likelihoods; answers when config.generate)."""
    scores = []
    for index, probe in enumerate(probes):
        if should_stop is not None and should_stop():
            raise JobCancelled()
        logprobs = {
            group: [
                _completion_logprob(model, tokenizer, probe.prompt(group), c)
                for c in probe.completions
            ]
            for group in probe.groups
        }
        answers = (
            {
                g: _answer(model, tokenizer, probe.prompt(g), config.max_new_tokens)
                for g in probe.groups
            }
            if config.generate
            else {}
        )
        scores.append(ProbeScore(probe.id, probe.attribute, logprobs, answers, probe.polarity))
        if progress is not None:
            progress(index + 1)
    return scores


def _spread(values: Iterable[float]) -> float:
    values = list(values)
    return max(values) - min(values) if values else 0.0


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def summarize(scores: Sequence[ProbeScore]) -> dict[str, Any]:
    """Per attribute: probes, ll_gap, refusal_gap, sentiment_gap (None without answers) and per
    group the mean favourability, refusal rate and sentiment."""
    out: dict[str, Any] = {}
    for attribute in sorted({s.attribute for s in scores}):
        mine = [s for s in scores if s.attribute == attribute]
        groups = sorted({g for s in mine for g in s.logprobs})
        answered = [s for s in mine if s.answers]
        per_group = {}
        for g in groups:
            with_g = [s for s in mine if g in s.logprobs]
            per_group[g] = {
                "favourability": _mean(f for s in with_g if (f := s.favourability(g)) is not None),
                "refusal": _mean(
                    float(is_refusal(s.answers[g])) for s in answered if g in s.answers
                ),
                "sentiment": _mean(sentiment(s.answers[g]) for s in answered if g in s.answers),
            }
        out[attribute] = {
            "probes": len(mine),
            "ll_gap": _mean(s.ll_gap() for s in mine) or 0.0,
            "refusal_gap": _mean(
                _spread(float(is_refusal(a)) for a in s.answers.values()) for s in answered
            ),
            "sentiment_gap": _mean(
                _spread(sentiment(a) for a in s.answers.values()) for s in answered
            ),
            "groups": per_group,
        }
    return out


@dataclass
class BiasReport:
    models: list[dict[str, Any]]
    attributes: list[str]
    summary: dict[str, dict[str, Any]]  # model key -> attribute -> numbers
    examples: dict[str, list[dict[str, Any]]]  # model key -> the probes with the widest gaps
    probes: int
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _widest(scores: Sequence[ProbeScore], n: int = 5) -> list[dict[str, Any]]:
    """The probes with the widest log-likelihood gaps, with each group's numbers. The answers'
    text is left out: it is unreviewed model output, and the report is numbers."""
    top = sorted(scores, key=lambda s: s.ll_gap(), reverse=True)[:n]
    return [
        {
            "id": s.id,
            "attribute": s.attribute,
            "ll_gap": round(s.ll_gap(), 4),
            "groups": {
                g: {
                    "logprob": round(sum(lps) / len(lps), 4),
                    "refusal": is_refusal(s.answers[g]) if g in s.answers else None,
                    "sentiment": round(sentiment(s.answers[g]), 3) if g in s.answers else None,
                }
                for g, lps in s.logprobs.items()
            },
        }
        for s in top
    ]


@timed("craft.bias_probe")
def run_bias_probe(
    config: BiasProbeConfig,
    *,
    model_dir: str | os.PathLike[str],
    adapters: Sequence[tuple[str, str | os.PathLike[str]]] = (),
    probes: Sequence[Probe] | None = None,
    base_name: str = "base",
    reporter: Reporter | None = None,
    device: str = "auto",
) -> BiasReport:
    """Score the base model, then each (name, adapter folder) merged on it, on the same probes."""
    import torch

    from workers.ml.craft.evaluation import load_text_model

    reporter = reporter or NullReporter()
    if probes is None:
        probes = load_probes(language=config.language, attributes=config.attribute_list())
    if not probes:
        raise JobFailed("no probes to run")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    runs: list[tuple[str, str, str | None]] = [("base", base_name, None)]
    runs += [(f"adapter-{i + 1}", name, str(path)) for i, (name, path) in enumerate(adapters)]
    total = len(runs) * len(probes)
    summary, examples, models = {}, {}, []
    for index, (key, name, adapter_dir) in enumerate(runs):
        reporter.log(f"probing {name} ({len(probes)} probes)")
        model, tokenizer = load_text_model(model_dir, adapter_dir=adapter_dir, device=device)
        done = index * len(probes)

        def progress(i: int, done: int = done) -> None:
            reporter.step(done + i, total)

        scores = score_model(
            model,
            tokenizer,
            probes,
            config,
            progress=progress,
            should_stop=reporter.should_stop,
        )
        summary[key] = summarize(scores)
        examples[key] = _widest(scores)
        models.append({"key": key, "name": name, "adapter": adapter_dir is not None})
        metrics = {f"ll_gap_{a}": v["ll_gap"] for a, v in summary[key].items()}
        reporter.step(done + len(probes), total, {f"{key}_{k}": v for k, v in metrics.items()})
        del model
    return BiasReport(
        models=models,
        attributes=sorted({p.attribute for p in probes}),
        summary=summary,
        examples=examples,
        probes=len(probes),
        config=config.to_dict(),
    )
