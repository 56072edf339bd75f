"""A hand-written PII hold-out set (records.md -> records.jsonl) and its scorer; see README.md."""
