"""The clp-crypto plugin, configured by name: ``[plugins.clp-crypto]``.

``keys`` maps key ids to ``"env:NAME"`` (the base64 key in that environment variable) and
``current`` names the key new writes use. When a runtime is created (or ``clp plugins``
runs), :func:`configure` installs the :class:`~clp_crypto.Encryption` process-wide with
:func:`clp_core.codec.use`; without keys it stays inactive. Keys that cannot be loaded (a
variable not set, a key of the wrong size) install a transform that refuses to write, so
nothing is ever stored in clear by mistake, and the plugin reports the cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clp_core.plugin_api import ConfigError, Inactive, codec, shared

from ._encryption import Encryption, Refusing

name = "clp-crypto"


def _build(options: Mapping[str, Any]) -> Encryption:
    keys = options.get("keys")
    if not isinstance(keys, Mapping):
        raise ConfigError("clp-crypto: keys must be a table of key id = \"env:VARIABLE\"")
    return Encryption(keys={str(k): v for k, v in keys.items()}, current=options.get("current"))


def configure(options: Mapping[str, Any]) -> Any:
    """Install the configured encryption (once per process for equal options)."""
    if not options.get("keys"):
        return Inactive("no keys configured")
    try:
        encryption = shared(_build, options)
    except Exception as exc:
        codec.use(Refusing(str(exc)))
        raise
    if codec.current() is not encryption:
        codec.use(encryption)
    return encryption
