"""Word lists the PII recognizers use (hand-written; see each module's docstring)."""
