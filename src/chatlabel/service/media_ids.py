"""Which platform file id each prepared media file got, so every file is uploaded once."""

from __future__ import annotations

from ..storage import repo
from .shared import Shared


class MediaIds:
    """A platform's file id per media file (by the prepared file's sha256)."""

    def __init__(self, shared: Shared) -> None:
        self.s = shared

    async def media_file_id(self, sha256: str, platform: str) -> str | None:
        """A platform's file id for a prepared media file, if uploaded before."""
        return await self.s.db.read(repo.media_file_id, sha256, platform)

    async def save_media_file_id(self, sha256: str, platform: str, file_id: str) -> None:
        """Remember a platform's file id so the file is uploaded once."""
        await self.s.db.write(repo.save_media_file_id, sha256, platform, file_id, short=True)
