"""The stored form: JSON in a versioned envelope, with dates and datetimes tagged.

Decoding is strict: text that is not plain JSON (``NaN``, ``Infinity``, numbers too big for a
float), nesting deeper than :data:`MAX_NESTING`, and a document that is not an object are all
:class:`~clp_core.errors.CorruptStateError`, never a ``RecursionError`` or a silent value.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain
from typing import Any, Protocol

from .errors import CorruptStateError, StateValueError

FORMAT = "clp/1"

#: The format of a sealed envelope (one a :class:`Transform` wrote): its plaintext is a
#: ``clp/1`` envelope, e.g. ``{"format": "clp/1+enc", "kid": "k2", "alg": "AES-256-GCM", ...}``.
SEALED_FORMAT = "clp/1+enc"


class Transform(Protocol):
    """What :func:`use` installs: it turns the stored text of every document, event and
    snapshot into another JSON envelope and back (``clp-crypto``'s ``Encryption`` does).

    ``seal(text)`` gets a ``clp/1`` envelope's text and returns the text to store, a JSON
    object whose ``"format"`` is :data:`SEALED_FORMAT`. ``open(envelope, backend=, key=)``
    gets such an object, parsed, and returns the ``clp/1`` text it sealed; a missing key,
    an unknown key id or tampered data is a :class:`CorruptStateError` naming the key id.
    """

    def seal(self, text: str) -> str: ...

    def open(self, envelope: Mapping[str, Any], *, backend: str, key: str) -> str: ...


#: The installed transform (None: the stored text is the ``clp/1`` envelope itself).
_transform: Transform | None = None


def use(transform: Transform | None) -> Transform | None:
    """Install ``transform`` for the whole process (None removes it); returns the previous one.

    With a transform, every adapter and event store writes sealed envelopes, and reads both
    sealed and plain ``clp/1`` ones (data written before it was installed stays readable).
    """
    global _transform
    previous, _transform = _transform, transform
    return previous


def current() -> Transform | None:
    """The installed transform, or None."""
    return _transform


@contextmanager
def using(transform: Transform | None) -> Iterator[Transform | None]:
    """``with codec.using(transform):`` installs ``transform`` for the block, then restores
    the previous one (for tests and scripts)."""
    previous = use(transform)
    try:
        yield transform
    finally:
        use(previous)

#: Deepest nesting of containers that a stored text may have, envelope included. State itself
#: is limited to :data:`clp_core.state.MAX_DEPTH` levels at write time; the rest is room for
#: the envelope and the records around the state (``{"document": {"state": ...}}``).
MAX_NESTING = 128


def _default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"__date__": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not storable")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "__date__" in obj:
            return _dt.date.fromisoformat(obj["__date__"])
        if "__datetime__" in obj:
            return _dt.datetime.fromisoformat(obj["__datetime__"])
    return obj


def _constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} does not fit a float")
    return value


_CONTAINERS = (dict, list, tuple)


def nesting(value: Any) -> int:
    """How many containers deep ``value`` is (``1`` for ``{}``, ``0`` for a scalar), counted
    past :data:`MAX_NESTING` only by one (it stops there). Walked a level at a time, each level
    gathered by one comprehension: a document of many small records costs a pass over its
    values at near C speed, not a push and a pop per container."""
    if not isinstance(value, _CONTAINERS):
        return 0
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > MAX_NESTING:
            return depth
        level = [child for child in chain.from_iterable(node.values() if isinstance(node, dict) else node
                                                      for node in level)
                 if isinstance(child, _CONTAINERS)]
    return depth


# one decoder for every read (json.loads with options builds a new one per call)
_DECODER = json.JSONDecoder(object_hook=_hook, parse_constant=_constant, parse_float=_float)


def _may_nest_deeply(text: str | bytes, limit: int = MAX_NESTING) -> bool:
    """False when ``text`` has too few brackets to nest past ``limit`` (counted at C speed,
    brackets inside strings included), so the walk of :func:`nesting` is only needed then."""
    if len(text) <= limit:  # fewer characters than that: fewer brackets too
        return False
    if isinstance(text, str):
        return text.count("[") + text.count("{") > limit
    return text.count(b"[") + text.count(b"{") > limit


def _too_deep() -> StateValueError:
    return StateValueError(f"document nests deeper than {MAX_NESTING} levels (envelope included)")


# one encoder for every write (json.dumps with options builds a new one per call)
_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _chunked_encoder() -> Any:
    """The C encoder ``_ENCODER.encode`` builds on every call (with a dict of the containers
    seen, and a float formatter), made once: a third of the cost of a small document. It keeps
    no state between calls; without the dict, a cycle (which states never hold) is a
    RecursionError. ``None`` where the C accelerator is missing (PyPy): ``_ENCODER`` then."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encoder = make(None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
        sample = {"a": [1, 2.5, None, True, "\u00e9"]}
        if "".join(encoder(sample, 0)) != _ENCODER.encode(sample):
            return None
    except Exception:  # a signature this Python does not take
        return None
    return encoder


_encode_chunks = _chunked_encoder()


def _json(value: Any) -> str:
    return "".join(_encode_chunks(value, 0)) if _encode_chunks is not None else _ENCODER.encode(value)


def encode(document: Any) -> str:
    """Serialise a document in the envelope ``{"format": "clp/1", "data": ...}``.

    What no durable backend could store or read back (non-finite numbers, values that are not
    JSON or dates, lone surrogates in strings, nesting deeper than :data:`MAX_NESTING`) is a
    :class:`~clp_core.errors.StateValueError`.
    """
    try:
        text = _json({"format": FORMAT, "data": document})
    except RecursionError:
        raise _too_deep() from None
    except (TypeError, ValueError) as exc:
        raise StateValueError(f"document cannot be stored: {exc}") from None
    if _may_nest_deeply(text) and nesting(document) + 1 > MAX_NESTING:
        raise _too_deep()
    return _finish(text)


def _finish(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StateValueError(
                f"document cannot be stored: a string holds a lone surrogate {text[exc.start]!r}") from None
    if _transform is not None:
        return _transform.seal(text)
    return text


_key_text = json.encoder.encode_basestring  # what the encoder writes for a key (ensure_ascii off)

#: How :func:`encode`'s text of a document (an object) begins when no transform is installed.
PLAIN_PREFIX = f'{{"format":{_key_text(FORMAT)},"data":{{'


def encode_members(items: Iterable[tuple[str, Any]], depth: int) -> dict[str, str]:
    """``{key: '"key":value'}``, each member as :func:`encode` writes it in an object ``depth``
    containers deep (the envelope is 1, a document's fields 2), with its checks: the parts of
    a text that :func:`encode_assembled` puts together (and seals, when a transform is installed)."""
    limit, members = MAX_NESTING - depth, {}
    try:
        for key, value in items:
            text = _json(value)
            if _may_nest_deeply(text, limit) and nesting(value) > limit:
                raise _too_deep()
            members[key] = f"{_key_text(key)}:{text}"
    except RecursionError:
        raise _too_deep() from None
    except (TypeError, ValueError) as exc:
        raise StateValueError(f"document cannot be stored: {exc}") from None
    return members


def encode_assembled(document: Mapping[str, Any], field: str, members: Iterable[str]) -> str:
    """:func:`encode` of ``document``, the same text, whose object ``field`` is given as its
    members' texts in order, as :func:`encode_members` makes them (at ``field``'s depth: 3 for
    a document's field), which the caller has checked: a writer that keeps them for a big
    object encodes only those that changed."""
    rest = encode_members(((name, value) for name, value in document.items() if name != field), 2)
    parts = [f"{_key_text(name)}:{{{','.join(members)}}}" if name == field else rest[name] for name in document]
    return _finish(f'{PLAIN_PREFIX}{",".join(parts)}}}}}')


def _open_sealed(envelope: dict[str, Any], *, backend: str, key: str) -> str:
    transform = _transform
    if transform is None:
        raise CorruptStateError(
            f"stored value for key {key!r} is encrypted (key id {envelope.get('kid')!r}) and no codec "
            "transform is installed: configure [plugins.clp-crypto] or call clp_core.codec.use(...)",
            backend=backend)
    return transform.open(envelope, backend=backend, key=key)


def decode(text: str | bytes, *, backend: str, key: str, _sealed: bool = False) -> Any:
    """Parse an envelope; anything else is a :class:`CorruptStateError`, never empty state.

    A sealed envelope (:data:`SEALED_FORMAT`) is opened by the installed :class:`Transform`;
    without one, it is a :class:`CorruptStateError` naming its key id.
    """
    try:
        envelope = _DECODER.decode(text if isinstance(text, str) else text.decode("utf-8"))
    except RecursionError:
        raise CorruptStateError(
            f"stored value for key {key!r} nests deeper than {MAX_NESTING} levels", backend=backend) from None
    except (ValueError, TypeError) as exc:
        raise CorruptStateError(f"stored value for key {key!r} is not valid JSON: {exc}", backend=backend) from None
    if not isinstance(envelope, dict) or "format" not in envelope or "data" not in envelope:
        if not _sealed and isinstance(envelope, dict) and envelope.get("format") == SEALED_FORMAT:
            opened = _open_sealed(envelope, backend=backend, key=key)
            return decode(opened, backend=backend, key=key, _sealed=True)
        raise CorruptStateError(f"stored value for key {key!r} is not a CLP envelope", backend=backend)
    if envelope["format"] != FORMAT:
        raise CorruptStateError(
            f"stored value for key {key!r} has unknown format version {envelope['format']!r} "
            f"(this version of clp-core reads {FORMAT!r})",
            backend=backend,
        )
    if _may_nest_deeply(text) and nesting(envelope) > MAX_NESTING:
        raise CorruptStateError(
            f"stored value for key {key!r} nests deeper than {MAX_NESTING} levels", backend=backend)
    return envelope["data"]


_scan = _DECODER.scan_once  # type: ignore[attr-defined]  # the C scanner behind decode()


def plain_object(text: str | bytes) -> dict[str, Any] | None:
    """The data of ``text`` if it is what :func:`encode` writes without a transform: a
    ``clp/1`` envelope holding an object, nothing around it, nesting too few brackets to
    check. Otherwise ``None``, and :func:`decode` reads it or says what is wrong with it.

    For such a text the result is :func:`decode`'s, read by the JSON scanner directly (no
    whitespace handling, no error wrapping): replay reads thousands of events this way."""
    try:
        if not isinstance(text, str):
            text = text.decode("utf-8")
        envelope, end = _scan(text, 0)
    except Exception:  # not JSON, a value the hooks refuse, too deep: decode() says which
        return None
    if end != len(text) or type(envelope) is not dict or envelope.get("format") != FORMAT:
        return None
    data = envelope.get("data")
    if type(data) is not dict or text.count("[") + text.count("{") > MAX_NESTING:  # _may_nest_deeply, inlined
        return None
    return data


def check_document(document: Any, *, key: str, backend: str) -> dict[str, Any]:
    """``document`` if it is a stored document (a JSON object); a :class:`CorruptStateError`
    naming ``key`` and ``backend`` otherwise (``"data": null``, an array, a number...)."""
    if not isinstance(document, dict):
        got = "null" if document is None else type(document).__name__
        raise CorruptStateError(f"stored document for key {key!r} is {got}, not an object", backend=backend)
    return document


def decode_document(text: str | bytes, *, backend: str, key: str) -> dict[str, Any]:
    """:func:`decode` of an adapter's stored document, checked by :func:`check_document`."""
    return check_document(decode(text, backend=backend, key=key), key=key, backend=backend)
