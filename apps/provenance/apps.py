import sys

from django.apps import AppConfig

# The interpreter's recursion limit before any web3 import (this module loads before the apps'
# models and admin modules): see ready().
RECURSION_LIMIT = sys.getrecursionlimit()


class ProvenanceConfig(AppConfig):
    name = "apps.provenance"
    label = "provenance"
    verbose_name = "Provenance"

    def ready(self) -> None:
        import workers.chain  # noqa: F401  (web3 loaded here, once, with the limit put back)
        from apps.jobs.registry import register_periodic
        from apps.provenance.conf import chain_config
        from apps.provenance.services import batcher_tick

        # py_ecc (under web3) raises the recursion limit to 100,000 on its first import, wherever
        # that happened; a deeply nested upload would then crash the process instead of raising
        # RecursionError (tests/services/test_dataset_bad_inputs.py). Put it back.
        sys.setrecursionlimit(RECURSION_LIMIT)
        # The scheduler runs the batcher (the spine does not import this app).
        register_periodic(
            "provenance.batcher", batcher_tick, every_seconds=chain_config().batcher_every
        )
