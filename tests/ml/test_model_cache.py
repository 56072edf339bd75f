"""The warm-model cache (workers.ml.cache): plain functions, no database."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from workers.ml import cache as cache_module
from workers.ml.cache import ModelCache, ModelKey, default_budget_bytes, estimate_bytes, parse_bytes
from workers.ml.models import build_tiny_llama, load_causal_lm


def linear(n: int, dtype=torch.float32) -> torch.nn.Module:
    """An n×n Linear without bias: n*n parameters."""
    return torch.nn.Linear(n, n, bias=False).to(dtype)


class CountingLoader:
    def __init__(self, make):
        self.make = make
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.make()


def test_size_is_parameters_times_element_size():
    assert estimate_bytes(linear(10)) == (400, False)
    assert estimate_bytes(linear(10, torch.float16)) == (200, False)
    tied = torch.nn.ModuleDict({"a": linear(10)})
    tied["b"] = tied["a"]  # the same weights twice count once
    assert estimate_bytes((tied, "a tokenizer")) == (400, False)


def test_a_second_get_does_not_reload():
    cache = ModelCache(10_000)
    loader = CountingLoader(lambda: linear(10))
    first, loaded = cache.get_or_load(ModelKey("/m", None, None, "cpu"), loader)
    assert loaded is True
    second, loaded = cache.get_or_load(ModelKey("/m", None, None, "cpu"), loader)
    assert loaded is False and second is first and loader.calls == 1
    other, loaded = cache.get_or_load(ModelKey("/m", None, "int8-dynamic", "cpu"), loader)
    assert loaded is True and other is not first and loader.calls == 2
    stats = cache.stats()
    assert (stats["entries"], stats["hits"], stats["misses"]) == (2, 1, 2)
    assert stats["used_bytes"] == 800


def test_the_least_recently_used_entry_is_evicted_when_over_budget():
    cache = ModelCache(1000)  # room for two 400-byte models
    a, _ = cache.get_or_load("a", lambda: linear(10))
    cache.get_or_load("b", lambda: linear(10))
    cache.get_or_load("a", lambda: pytest.fail("a must still be cached"))  # a is now recent
    cache.get_or_load("c", lambda: linear(10))
    assert "b" not in cache
    assert "a" in cache and "c" in cache
    assert cache.get("a") is a
    stats = cache.stats()
    assert stats["evictions"] == 1 and stats["used_bytes"] == 800
    assert [k["key"] for k in stats["keys"]] == ["'c'", "'a'"]  # least recently used first


def test_an_entry_larger_than_the_budget_is_returned_and_kept_alone():
    cache = ModelCache(1000)
    cache.get_or_load("small", lambda: linear(10))
    big, loaded = cache.get_or_load("big", lambda: linear(20))  # 1,600 bytes
    assert loaded and big.weight.shape == (20, 20)
    assert len(cache) == 1 and "big" in cache


def test_expected_bytes_makes_room_before_loading():
    cache = ModelCache(1000)
    cache.get_or_load("a", lambda: linear(10))
    cache.get_or_load("b", lambda: linear(10))
    seen_during_load = []

    def loader():
        seen_during_load.append(len(cache))
        return linear(10)

    cache.get_or_load("c", loader, expected_bytes=400)
    assert seen_during_load == [1]  # "a" went before "c" was loaded, not after


def test_concurrent_gets_of_one_key_load_once():
    cache = ModelCache(10_000)

    def slow():
        time.sleep(0.2)
        return linear(10)

    loader = CountingLoader(slow)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_load("k", loader)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.calls == 1
    assert len({id(obj) for obj, _ in results}) == 1
    assert sorted(loaded for _, loaded in results) == [False] * 7 + [True]


def test_a_failed_load_is_not_cached_and_can_be_retried():
    cache = ModelCache(10_000)

    def broken():
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        cache.get_or_load("k", broken)
    assert "k" not in cache
    _, loaded = cache.get_or_load("k", lambda: linear(4))
    assert loaded


def test_evict_and_clear_free_entries():
    cache = ModelCache(10_000)
    cache.get_or_load("a", lambda: linear(4))
    cache.get_or_load("b", lambda: linear(4))
    assert cache.evict("a") is True and cache.evict("a") is False
    cache.clear()
    assert len(cache) == 0 and cache.stats()["used_bytes"] == 0


def test_the_cache_keeps_a_loaded_tiny_llama_warm(tmp_path):
    folder = build_tiny_llama(tmp_path / "tiny")
    cache = ModelCache(10 * 1024**2)
    key = ModelKey(str(folder), None, None, "cpu")
    (model, tokenizer), loaded = cache.get_or_load(
        key, lambda: load_causal_lm(folder, device="cpu")
    )
    assert loaded
    assert cache.stats()["used_bytes"] == sum(p.numel() * 4 for p in model.parameters())
    (again, _), loaded = cache.get_or_load(key, lambda: pytest.fail("reloaded"))
    assert not loaded and again is model


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ATELIER_MODEL_CACHE_BYTES", "123456")
    assert default_budget_bytes() == 123456
    monkeypatch.setenv("ATELIER_MODEL_CACHE_BYTES", "2G")
    assert default_budget_bytes() == 2 * 1024**3
    assert parse_bytes("512MiB") == 512 * 1024**2
    with pytest.raises(ValueError):
        parse_bytes("-1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU worker the budget is GPU memory")
def test_the_default_budget_is_sixty_percent_of_available_memory(monkeypatch):
    monkeypatch.delenv("ATELIER_MODEL_CACHE_BYTES", raising=False)
    expected = 0.6 * cache_module.available_ram_bytes()
    assert abs(default_budget_bytes() - expected) < 0.05 * expected


def test_the_default_cache_is_created_once_on_first_use(monkeypatch):
    monkeypatch.setattr(cache_module, "_default", None)
    monkeypatch.setenv("ATELIER_MODEL_CACHE_BYTES", "1M")
    first = cache_module.default_cache()
    assert first is cache_module.default_cache()
    assert first.max_bytes == 1024**2
