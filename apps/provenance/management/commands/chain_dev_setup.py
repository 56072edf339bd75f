"""Development only (`make run`): a signer key, funds on a local node, and the registry.

The key is a fresh random one written once to var/chain/signer.key (mode 0600), never anvil's
published account #0: nothing a development signer holds is known to anyone else. On anvil (or
hardhat) it is funded with `anvil_setBalance`; on another node the command says which address
to fund. A key already configured in the environment is used as it is, and no file is written.
"""

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from eth_account import Account

from apps.provenance import chain
from apps.provenance.conf import chain_config
from apps.provenance.management.commands.chain_deploy import deploy
from workers.chain.keys import KEY_VARIABLES, SignerConfigError, load_signer

DEV_BALANCE_WEI = 1000 * 10**18


def signer_key_file() -> Path:
    return Path(settings.VAR_DIR) / "chain" / "signer.key"


def create_key_file(path: Path) -> None:
    """A new random key in `path`, created 0600 (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(Account.create().key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())


class Command(BaseCommand):
    help = (
        "Development: create var/chain/signer.key (0600) if no signer key is configured, fund "
        "it on anvil, and deploy the registry. Prints CHAIN_PRIVATE_KEY_FILE for the signer."
    )

    def handle(self, *args, **options):
        cfg = chain_config()
        if not cfg.enabled:
            raise CommandError("CHAIN_RPC_URL is not set: start anvil and point it there")
        environ = dict(os.environ)
        if not any(environ.get(name) for name in KEY_VARIABLES):
            path = signer_key_file()
            if not path.exists():
                create_key_file(path)
            environ["CHAIN_PRIVATE_KEY_FILE"] = str(path)
        try:
            account = load_signer(environ)
        except SignerConfigError as exc:
            raise CommandError(str(exc)) from None
        self._fund(account.address, cfg)
        deployment, deployed = deploy(account=account)
        verb = "Deployed" if deployed else "Already deployed:"
        self.stdout.write(f"{verb} registry {deployment.address} on chain {cfg.chain_id}")
        if environ.get("CHAIN_PRIVATE_KEY_FILE"):
            # The signer worker needs this in its environment (the key itself is never printed).
            self.stdout.write(f"CHAIN_PRIVATE_KEY_FILE={environ['CHAIN_PRIVATE_KEY_FILE']}")

    def _fund(self, address: str, cfg) -> None:
        w3 = chain.connect(cfg)
        balance = int(w3.eth.get_balance(address))
        if balance >= DEV_BALANCE_WEI // 10:
            return
        if chain.is_dev_chain(w3):
            w3.provider.make_request("anvil_setBalance", [address, hex(DEV_BALANCE_WEI)])
            self.stdout.write(f"Funded signer {address} with 1000 ETH (anvil_setBalance)")
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"Signer {address} holds {balance / 1e18:.4f} ETH on chain {cfg.chain_id}: "
                    "fund it before outputs can be recorded"
                )
            )
