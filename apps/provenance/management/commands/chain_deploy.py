import os

from django.core.management.base import BaseCommand, CommandError

from apps.provenance import chain
from apps.provenance.conf import chain_config
from apps.provenance.models import ChainDeployment
from apps.provenance.services import chain_deployment_ensure
from workers.chain.keys import SignerConfigError, load_signer


class Command(BaseCommand):
    help = (
        "Deploy the provenance registry on the chain at CHAIN_RPC_URL (from the signer key in "
        "CHAIN_PRIVATE_KEY_FILE, CHAIN_KEYSTORE or CHAIN_PRIVATE_KEY) unless the deployment "
        "recorded for CHAIN_ID still has its code there. Prints the address, never the key."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true", help="Deploy a new registry even if one is in use"
        )

    def handle(self, *args, force=False, **options):
        try:
            account = load_signer(os.environ)
        except SignerConfigError as exc:
            raise CommandError(str(exc)) from None
        deployment, deployed = deploy(account=account, force=force)
        verb = "Deployed" if deployed else "Already deployed:"
        self.stdout.write(
            f"{verb} registry {deployment.address} on chain {deployment.chain_id} "
            f"(signer {account.address})"
        )


def deploy(*, account, force: bool = False) -> tuple[ChainDeployment, bool]:
    """The configured chain's registry, deployed from `account` unless it is there already."""
    cfg = chain_config()
    if not cfg.enabled:
        raise CommandError("CHAIN_RPC_URL is not set: point it at an Ethereum node")
    w3 = chain.connect(cfg)
    served = int(w3.eth.chain_id)
    if served != cfg.chain_id:
        raise CommandError(f"The node serves chain {served}, but CHAIN_ID is {cfg.chain_id}")
    return chain_deployment_ensure(w3=w3, account=account, chain_id=cfg.chain_id, force=force)
