"""The JSON text of a big state, kept by top-level key from one whole write of its document to
the next, so that writing it whole again (a patch log's compaction) encodes only the
top-level values the commits since have changed, and joins the others' texts as they were.

It holds about the encoded size of the state. What changed comes from the commits' changes
(the same paths their patches are made from); a state replaced whole (a load) starts it anew.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import codec
from ..state import Path, State

_STATE_DEPTH = 3  # the envelope, the document, the state: where a top-level value's member sits


class StateText:
    def __init__(self) -> None:
        self._of: State | None = None  # the state dict the texts are of
        self._texts: dict[str, str] = {}  # key -> '"key":value', in the state's order
        self._stale: set[str] = set()  # keys written since the texts were last stored
        self._whole_stale = True
        self.kept = False  # whether texts of some state are held (a plain attribute: read on every write)

    def forget(self, paths: Iterable[Path]) -> None:
        """The state was written at ``paths`` (by a commit, saved or about to be)."""
        if self._whole_stale:
            return
        stale = self._stale
        for path in paths:
            if not path:
                self._whole_stale = True
                return
            stale.add(path[0])

    def reset(self) -> None:
        """The state was replaced whole (loaded), or written whole without :meth:`encode`."""
        self._of, self._whole_stale, self.kept = None, True, False
        self._texts.clear()
        self._stale.clear()

    def encode(self, document: dict[str, Any], state: State) -> str:
        """``codec.encode(document)``, the same text, ``document["state"]`` being ``state``;
        the texts of the keys written since :meth:`stored` are encoded anew (and kept
        stale until it is called: the save may fail, and the commit be rolled back)."""
        texts = self._texts
        if self._whole_stale or state is not self._of:
            self._of, self._whole_stale, self.kept = state, True, True
            texts.clear()
            texts.update(codec.encode_members(state.items(), _STATE_DEPTH))
        else:
            texts.update(codec.encode_members(((key, state[key]) for key in self._stale if key in state),
                                              _STATE_DEPTH))
            for key in self._stale:
                if key not in state:
                    texts.pop(key, None)
            if len(texts) != len(state) or not all(map(str.__eq__, texts, state)):
                # keys added or put back (a rollback restores a deleted key at the end): the state's order
                texts.update(codec.encode_members(((k, v) for k, v in state.items() if k not in texts), _STATE_DEPTH))
                self._texts = texts = {key: texts[key] for key in state}
        return codec.encode_assembled(document, "state", texts.values())

    def stored(self) -> None:
        """The text :meth:`encode` made was saved: its texts are the stored state's."""
        self._whole_stale = False
        self._stale.clear()
