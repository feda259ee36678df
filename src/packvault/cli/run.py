"""What one invocation of the CLI was handed by its environment: the settings, and the passphrases it used.

Built by ``main`` before anything heavy is imported and passed to every command, which hands it on to the
repository (``Settings``) and to unlocking (``Passphrase``): nothing below ``cli/`` reads the environment.
The passphrase and KDF modules are imported only once a passphrase is asked for, so that a backup's reader
server starts before they load (``main.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:
    from ..crypto.kdf import KdfParams, Passphrase


@dataclass
class Run:
    settings: Settings
    early: Passphrase | None = None
    """The passphrase of PACKVAULT_PASSPHRASE, with the key already derived when the repository's KDF
    parameters were remembered (``early_unlock.py``)."""
    passphrases: list[Passphrase] = field(default_factory=list)

    @classmethod
    def from_environ(cls) -> Run:
        return cls(Settings.from_environ(os.environ))

    def passphrase(self) -> Passphrase:
        """The repository's passphrase: PACKVAULT_PASSPHRASE, else PACKVAULT_PASSCOMMAND, else a prompt."""
        from ..crypto.kdf import Passphrase
        from .passphrase import get_passphrase

        passphrase = self.early if self.early is not None else Passphrase(get_passphrase())
        if passphrase not in self.passphrases:
            self.passphrases.append(passphrase)
        return passphrase

    def new_passphrase(self, **sources) -> Passphrase:
        """A passphrase to seal a key under (``get_passphrase`` with ``confirm`` and ``sources``)."""
        from ..crypto.kdf import Passphrase
        from .passphrase import get_passphrase

        passphrase = Passphrase(get_passphrase(confirm=True, **sources))
        self.passphrases.append(passphrase)
        return passphrase

    def used_params(self) -> list[KdfParams]:
        """The distinct KDF parameters this run derived keys for, first use first."""
        return list(dict.fromkeys(params for passphrase in self.passphrases for params in passphrase.used))
