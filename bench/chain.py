"""Provenance on chain (issue 13): gas and throughput of recording output hashes, on a real node.

    .venv/bin/python bench/chain.py [--singles 200] [--proofs 20000] [--quick] [--seed 13]

Starts anvil (contracts/node_modules; its state dumped every second to a temp dir, as
`make run` runs it), deploys the registry from anvil's development key, and measures in the
same run:

1. baseline: one `recordHash` transaction per output, as a signer without batching would send
   them (build with a gas estimate, sign, send, wait for the receipt; one at a time): gas per
   hash and hashes/s;
2. Merkle batches of 10, 1,000 and 100,000: leaves from the SHA-256s, tree build, one
   `recordRoot` transaction and its receipt. Gas per hash and hashes/s, as ratios to (1). The
   proofs every output keeps are extracted too, timed apart;
3. tree build for 100,000 leaves (goal <= 1 s), with each keccak backend installed
   (workers/chain/merkle.py uses the first);
4. proof verification on that tree (17 siblings a proof): goal >= 10,000/s;
5. verify_document end to end: the stand-alone check of a proof file, which reads the root's
   record from the node over JSON-RPC.

Gas per hash counts each transaction's whole gasUsed, the 21,000 intrinsic gas included.
Approval -> confirmed record latency on the running platform: bench/provenance.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)
sys.path.insert(0, str(ROOT))

from apps.core.processes import anvil_binary, anvil_cmd, free_port, spawn  # noqa: E402
from bench._common import say  # noqa: E402
from workers.chain import merkle  # noqa: E402
from workers.chain.contract import Registry, deploy_registry  # noqa: E402
from workers.chain.keys import ANVIL_DEV_KEY, DEV_KEY_NOTE, load_signer, sign_tx  # noqa: E402
from workers.chain.node import suggested_fees, wait_until_answers  # noqa: E402
from workers.chain.proof import proof_document, verify_document  # noqa: E402

GOAL_BUILD_S = 1.0
GOAL_VERIFY_PER_S = 10_000.0
GOAL_GAS_PER_HASH = 50.0
BATCHES = (10, 1_000, 100_000)
BIG = 100_000


def _backends() -> dict[str, Callable[[bytes], bytes]]:
    """Every keccak implementation installed here, the one merkle.py picked first."""
    found = {merkle.KECCAK_BACKEND: merkle.keccak}
    try:
        from sha3 import keccak_256

        found.setdefault("safe-pysha3", lambda data: keccak_256(data).digest())
    except ImportError:
        pass
    from Crypto.Hash import keccak as cryptodome

    found.setdefault(
        "pycryptodome", lambda data: cryptodome.new(digest_bits=256, data=data).digest()
    )
    return found


class Backend:
    """Run merkle.py with another keccak for a while (its functions look the name up per call)."""

    def __init__(self, fn: Callable[[bytes], bytes]):
        self.fn, self.saved = fn, merkle.keccak

    def __enter__(self) -> None:
        merkle.keccak = self.fn  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        merkle.keccak = self.saved  # type: ignore[assignment]


class Chain:
    """anvil in a temp dir, the registry deployed, and a signer keeping its own nonce."""

    def __init__(self, tmp: Path):
        if not anvil_binary().exists():
            raise SystemExit(f"anvil missing at {anvil_binary()}: run `npm ci --prefix contracts`")
        port = free_port()
        self.proc = spawn(
            "anvil",
            anvil_cmd(port=port, state_path=tmp / "anvil-state.json"),
            env=os.environ,
            log_dir=tmp / "logs",
        )
        self.url = f"http://127.0.0.1:{port}"
        self.w3 = wait_until_answers(self.url)
        say(DEV_KEY_NOTE)
        self.signer = load_signer({"CHAIN_PRIVATE_KEY": ANVIL_DEV_KEY})
        self.registry = Registry(self.w3, deploy_registry(self.w3, account=self.signer))
        self.chain_id = self.w3.eth.chain_id
        self.nonce = self.w3.eth.get_transaction_count(self.signer.address)
        self.fees = suggested_fees(self.w3)

    def send(self, build: Callable[..., dict]) -> dict:
        """Build (gas estimated), sign, send, wait for the receipt; return the receipt."""
        max_fee, tip = self.fees
        tx = build(
            sender=self.signer.address,
            nonce=self.nonce,
            chain_id=self.chain_id,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
        )
        raw, tx_hash = sign_tx(self.signer, tx)
        self.w3.eth.send_raw_transaction(raw)
        receipt = dict(self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60))
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash} reverted")
        self.nonce += 1
        return receipt

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except Exception:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _shas(rng: random.Random, n: int) -> list[str]:
    return [rng.randbytes(32).hex() for _ in range(n)]


def bench_singles(chain: Chain, rng: random.Random, n: int) -> dict:
    say(f"baseline: {n} recordHash transactions, one at a time")
    shas = _shas(rng, n)
    gas = []
    t0 = time.perf_counter()
    for sha in shas:
        h = bytes.fromhex(sha)
        receipt = chain.send(lambda **kw: chain.registry.record_hash_tx(h, **kw))  # noqa: B023
        gas.append(receipt["gasUsed"])
    seconds = time.perf_counter() - t0
    return {"n": n, "seconds": seconds, "gas_per_hash": statistics.mean(gas)}


def bench_batch(chain: Chain, rng: random.Random, n: int, repeats: int) -> dict:
    say(f"batches of {n:,}: {repeats} x (leaves, tree, proofs, one recordRoot)")
    rows = []
    for _ in range(repeats):
        shas = _shas(rng, n)
        t0 = time.perf_counter()
        leaves = [merkle.leaf_for_sha256(s) for s in shas]
        t1 = time.perf_counter()
        tree = merkle.build_tree(leaves)
        t2 = time.perf_counter()
        receipt = chain.send(
            lambda **kw: chain.registry.record_root_tx(tree.root, n, **kw)  # noqa: B023
        )
        t3 = time.perf_counter()
        proofs = [tree.proof(i) for i in range(n)]
        t4 = time.perf_counter()
        assert len(proofs) == n
        rows.append(
            {
                "leaves": t1 - t0,
                "build": t2 - t1,
                "tx": t3 - t2,
                "proofs": t4 - t3,
                "gas": receipt["gasUsed"],
            }
        )
    total = sum(r["leaves"] + r["build"] + r["tx"] for r in rows)
    return {
        "n": n,
        "repeats": repeats,
        "gas": statistics.mean(r["gas"] for r in rows),
        "gas_per_hash": statistics.mean(r["gas"] for r in rows) / n,
        "hashes_per_s": n * repeats / total,
        **{
            f"{k}_ms": 1000 * statistics.median(r[k] for r in rows)
            for k in ("leaves", "build", "tx", "proofs")
        },
    }


def bench_tree(rng: random.Random, n_proofs: int, builds: int) -> dict:
    leaves = [merkle.leaf_for_sha256(s) for s in _shas(rng, BIG)]
    out = {}
    for name, fn in _backends().items():
        say(f"tree of {BIG:,} leaves, {builds} builds, {n_proofs:,} proofs verified ({name})")
        with Backend(fn):
            times = []
            for _ in range(builds):
                t0 = time.perf_counter()
                tree = merkle.build_tree(leaves)
                times.append(time.perf_counter() - t0)
            picks = [rng.randrange(BIG) for _ in range(n_proofs)]
            t0 = time.perf_counter()
            proofs = [(leaves[i], tree.proof(i)) for i in picks]
            t_gen = time.perf_counter() - t0
            t0 = time.perf_counter()
            ok = sum(merkle.verify_proof(leaf, proof, tree.root) for leaf, proof in proofs)
            t_verify = time.perf_counter() - t0
        if ok != n_proofs:
            raise RuntimeError(f"{n_proofs - ok} proofs did not verify with {name}")
        out[name] = {
            "build_median_s": statistics.median(times),
            "build_best_s": min(times),
            "verify_per_s": n_proofs / t_verify,
            "proofs_per_s": n_proofs / t_gen,
            "proof_len": len(proofs[0][1]),
        }
    return out


def bench_documents(chain: Chain, rng: random.Random, n: int) -> dict:
    say(f"verify_document: {n} proof files against the node")
    shas = _shas(rng, 1000)
    tree = merkle.build_tree([merkle.leaf_for_sha256(s) for s in shas])
    receipt = chain.send(lambda **kw: chain.registry.record_root_tx(tree.root, len(shas), **kw))
    docs = [
        json.loads(
            json.dumps(
                proof_document(
                    sha256_hex=shas[i],
                    leaf=tree.leaves[i],
                    proof=tree.proof(i),
                    root=tree.root,
                    chain_id=chain.chain_id,
                    contract=chain.registry.address,
                    tx_hash=receipt["transactionHash"],
                    block_number=receipt["blockNumber"],
                    batch_count=len(shas),
                    leaf_index=i,
                )
            )
        )
        for i in rng.sample(range(len(shas)), n)
    ]
    t0 = time.perf_counter()
    results = [verify_document(doc, w3=chain.w3) for doc in docs]
    seconds = time.perf_counter() - t0
    if not all(r.verified for r in results):
        raise RuntimeError(next(r.reason for r in results if not r.verified))
    return {"n": n, "per_s": n / seconds, "ms": 1000 * seconds / n}


def print_report(r: dict) -> None:
    single = r["single"]
    base_rate = single["n"] / single["seconds"]
    print(f"Recording output hashes on anvil (chain {r['chain_id']}, {r['anvil']}):")
    print(
        f"  {'':<26} {'gas/tx':>8} {'gas/hash':>10} {'hashes/s':>11} {'x rate':>8} {'/ gas':>9}"
        f"  {'leaves':>8} {'tree':>8} {'tx':>8} {'proofs':>8}"
    )
    print(
        f"  {'baseline recordHash x' + format(single['n'], ','):<26} {single['gas_per_hash']:>8,.0f}"
        f" {single['gas_per_hash']:>10,.1f} {base_rate:>11,.0f} {1.0:>7.1f}x {1.0:>8.0f}x"
        f"  (one transaction and receipt per hash)"
    )
    for b in r["batches"]:
        print(
            f"  {'Merkle batch of ' + format(b['n'], ','):<26} {b['gas']:>8,.0f}"
            f" {b['gas_per_hash']:>10,.2f} {b['hashes_per_s']:>11,.0f}"
            f" {b['hashes_per_s'] / base_rate:>7.1f}x"
            f" {single['gas_per_hash'] / b['gas_per_hash']:>8,.0f}x"
            f"  {b['leaves_ms']:>6.1f}ms {b['build_ms']:>6.1f}ms {b['tx_ms']:>6.1f}ms"
            f" {b['proofs_ms']:>6.1f}ms"
        )
    print("  (batch times: medians; hashes/s counts leaves + tree + transaction, not proofs)")
    print(f"Tree of {BIG:,} leaves (keccak backends; the first is the one in use):")
    for name, t in r["tree"].items():
        print(
            f"  {name:<13} build median {t['build_median_s']:.3f} s (best {t['build_best_s']:.3f})"
            f"  verify {t['verify_per_s']:>9,.0f} proofs/s  extract {t['proofs_per_s']:>9,.0f}/s"
            f"  ({t['proof_len']} siblings)"
        )
    d = r["documents"]
    print(
        f"verify_document (proof file + rootRecord over JSON-RPC): {d['per_s']:,.0f}/s"
        f" ({d['ms']:.2f} ms each, {d['n']} files)"
    )


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="atelier-bench-chain-"))
    chain = None
    try:
        say(f"starting anvil ({anvil_binary()}) with its state in {tmp}")
        chain = Chain(tmp)
        repeats = {10: 20, 1_000: 5, 100_000: 3} if not args.quick else {10: 5, 1_000: 2, BIG: 1}
        report = {
            "chain_id": chain.chain_id,
            "anvil": chain.w3.client_version,
            "single": bench_singles(chain, rng, args.singles),
            "batches": [bench_batch(chain, rng, n, repeats[n]) for n in BATCHES],
            "documents": bench_documents(chain, rng, 100 if args.quick else 300),
        }
        report["tree"] = bench_tree(rng, args.proofs, 3 if args.quick else 5)
        return report
    finally:
        if chain is not None:
            chain.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--singles", type=int, default=None, help="recordHash transactions (200)")
    ap.add_argument("--proofs", type=int, default=None, help="proofs verified (20000)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 50 singles, 5000 proofs")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    args.singles = args.singles or (50 if args.quick else 200)
    args.proofs = args.proofs or (5_000 if args.quick else 20_000)
    report = run(args)
    print_report(report)
    print(json.dumps(report), file=sys.stderr)

    used = merkle.KECCAK_BACKEND
    tree = report["tree"][used]
    big = next(b for b in report["batches"] if b["n"] == BIG)
    single = report["single"]
    rate_ratio = big["hashes_per_s"] / (single["n"] / single["seconds"])
    ok = (
        tree["build_median_s"] <= GOAL_BUILD_S
        and tree["verify_per_s"] >= GOAL_VERIFY_PER_S
        and big["gas_per_hash"] <= GOAL_GAS_PER_HASH
    )
    print(
        f"headline: gas/hash at {BIG:,} {big['gas_per_hash']:.2f} (goal <= {GOAL_GAS_PER_HASH:g};"
        f" recordHash {single['gas_per_hash']:,.0f}), tree build {BIG:,} leaves"
        f" {tree['build_median_s']:.2f} s (goal <= {GOAL_BUILD_S:g} s), proofs verified"
        f" {tree['verify_per_s']:,.0f}/s (goal >= {GOAL_VERIFY_PER_S:,.0f}/s), batch/single"
        f" hashes/s {rate_ratio:,.0f}x ({used}){'' if ok else ' — GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
