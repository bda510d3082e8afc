"""Encryption at rest for CLP: state documents, events and snapshots sealed with AES-256-GCM.

Every adapter and event store writes through :mod:`clp_core.codec`, so one installed
:class:`Encryption` covers them all (memory, files, SQLite, Redis, PostgreSQL, MongoDB)::

    from clp_core import codec
    from clp_crypto import Encryption

    codec.use(Encryption(keys={"k1": old_key, "k2": new_key}, current="k2"))

or, through configuration, ``[plugins.clp-crypto]`` with ``keys = {k2 = "env:CLP_KEY_K2"}``
and ``current = "k2"``. Data written before (plain ``clp/1``) stays readable; new writes are
sealed under the current key; data sealed under an older key reads as long as that key is
still listed.
"""

from __future__ import annotations

from ._encryption import ALGORITHM, Encryption, Refusing, generate_key, load_key

__version__ = "0.1.0"

__all__ = ["ALGORITHM", "Encryption", "Refusing", "__version__", "generate_key", "load_key"]
