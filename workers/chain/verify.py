"""Verify a provenance proof document against the chain, with nothing but web3 and the file.

    python -m workers.chain.verify proof.json --rpc http://127.0.0.1:8545 [--file output.png]
                                   [--submitter 0x...] [--json]

Exit status 0 when verified, 1 when not, 2 on a usage error (unreadable file, bad JSON).
With --file, the file's SHA-256 must also be the document's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

from workers.chain.proof import Verification, verify_document

DEFAULT_RPC = "http://127.0.0.1:8545"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m workers.chain.verify",
        description="Check an Atelier provenance proof against the registry on chain.",
    )
    ap.add_argument("document", type=Path, help="the proof document (JSON)")
    ap.add_argument(
        "--rpc",
        default=os.environ.get("CHAIN_RPC_URL", DEFAULT_RPC),
        help="the chain's JSON-RPC URL (default: $CHAIN_RPC_URL or %(default)s)",
    )
    ap.add_argument("--file", type=Path, help="the output itself: its SHA-256 must match")
    ap.add_argument("--submitter", help="the address that must have recorded the root")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)

    try:
        doc = json.loads(args.document.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"cannot read {args.document}: {exc}", file=sys.stderr)
        return 2
    if args.file is not None:
        try:
            actual = _sha256_file(args.file)
        except OSError as exc:
            print(f"cannot read {args.file}: {exc}", file=sys.stderr)
            return 2
        claimed = str(doc.get("sha256", "")).lower() if isinstance(doc, dict) else ""
        if actual != claimed:
            result = Verification(False, f"{args.file} has SHA-256 {actual}, not the document's")
            return _report(result, args.json)
    result = verify_document(doc, rpc_url=args.rpc, expected_submitter=args.submitter)
    return _report(result, args.json)


def _report(result: Verification, as_json: bool) -> int:
    if as_json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        print(("VERIFIED: " if result.verified else "NOT VERIFIED: ") + result.reason)
        if result.timestamp is not None:
            print(f"  block {result.block_number}, time {result.timestamp}, by {result.submitter}")
    return 0 if result.verified else 1


if __name__ == "__main__":
    sys.exit(main())
