"""The files the Telegram double holds: what users sent (photos, documents), each
known by the file id Telegram gave it, which a bot may send again by that id.

As Telegram does, a file id the double never gave out is refused ("wrong file
identifier"), and so is a photo's id sent as a document or the other way round
("type of file mismatch"). The double keeps no bytes: a bot uploading a file
gets NotImplementedError, as for any method the double does not answer.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

from aiogram.types import Document, PhotoSize

from bot.sim.content import Refused

# Telegram's file ids are base64url strings of some 70-90 characters; a photo's
# start "AgAC", a document's "BQAC".
_PREFIX = {"photo": "AgACAgIAAxkBAA", "document": "BQACAgIAAxkBAA"}
_UNIQUE = itertools.count(1)
MIN_FILE_ID_LENGTH = 20


@dataclass(frozen=True, slots=True)
class StoredFile:
    kind: str  # "photo" or "document"
    file_id: str
    file_unique_id: str
    size: int
    name: str | None = None
    mime_type: str | None = None


class FileStore:
    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}

    def add(
        self, kind: str, size: int, name: str | None = None, mime_type: str | None = None
    ) -> StoredFile:
        """A new file a user sent, with the file id Telegram gives it."""
        file_id = _PREFIX[kind] + secrets.token_urlsafe(45)
        stored = StoredFile(kind, file_id, f"AQAD{next(_UNIQUE):08d}", size, name, mime_type)
        self._files[file_id] = stored
        return stored

    def photo_sizes(self, size: int) -> list[PhotoSize]:
        """A photo as a message carries it: a thumbnail and the full size (last),
        each a file of its own."""
        thumbnail = self.add("photo", max(size // 20, 1))
        full = self.add("photo", size)
        return [
            PhotoSize(
                file_id=thumbnail.file_id,
                file_unique_id=thumbnail.file_unique_id,
                width=90,
                height=67,
                file_size=thumbnail.size,
            ),
            PhotoSize(
                file_id=full.file_id,
                file_unique_id=full.file_unique_id,
                width=1280,
                height=960,
                file_size=full.size,
            ),
        ]

    def document(self, name: str, size: int, mime_type: str) -> Document:
        stored = self.add("document", size, name, mime_type)
        return Document(
            file_id=stored.file_id,
            file_unique_id=stored.file_unique_id,
            file_name=name,
            mime_type=mime_type,
            file_size=size,
        )

    def resend(self, kind: str, value: object) -> StoredFile:
        """The file a send* request names by its id, or what Telegram refuses."""
        if not isinstance(value, str):
            raise NotImplementedError("the Telegram double takes files by file id only")
        if value.startswith(("http://", "https://")):
            raise Refused("wrong file identifier/HTTP URL specified")
        stored = self._files.get(value)
        if stored is None:
            if len(value) < MIN_FILE_ID_LENGTH:
                raise Refused("wrong remote file identifier specified: Wrong string length")
            raise Refused("wrong file identifier/HTTP URL specified")
        if stored.kind != kind:
            raise Refused("type of file mismatch")
        return stored
