"""Flask integration: ``rpcc.flask.init_app(app)``.

Settings (``app.config``): ``RPCC_INVENTORY`` (TOML path; or build one per request with
``Inventory.from_dicts``), ``RPCC_STATE`` (``sqlite:///…``), ``RPCC_KEY_FILE``,
``RPCC_ALLOW_PLAINTEXT``. The engine is stored in ``app.extensions["rpcc"]``.
"""

from __future__ import annotations

from typing import Any, Optional

from . import Engine, Inventory


class RpccExtension:
    """What ``app.extensions["rpcc"]`` holds."""

    def __init__(self, state: str, key_file: Optional[str], allow_plaintext: bool) -> None:
        self.state = state
        self.key_file = key_file
        self.allow_plaintext = allow_plaintext
        self.engine: Optional[Engine] = None

    def engine_for(self, inventory: Inventory) -> Engine:
        """An engine for ``inventory`` sharing this app's state and keys."""
        return Engine(inventory, self.state, key_file=self.key_file)


def init_app(app: Any) -> RpccExtension:
    cfg = app.config
    ext = RpccExtension(
        state=str(cfg.get("RPCC_STATE", "sqlite:///.rpcc/state.db")),
        key_file=cfg.get("RPCC_KEY_FILE"),
        allow_plaintext=bool(cfg.get("RPCC_ALLOW_PLAINTEXT", False)),
    )
    path = cfg.get("RPCC_INVENTORY")
    if path:
        inventory = Inventory.from_toml(path, allow_plaintext=ext.allow_plaintext)
        ext.engine = ext.engine_for(inventory)
    app.extensions["rpcc"] = ext
    return ext
