"""Reading what a remote party answers (a partner node, the directory authority, the identity
provider) with a bound: a hostile or broken one must not make this node hold an endless body
in memory.

``await read_answer(resp, limit)``: the whole body, however the network cut it, or ``None``
when it is longer than ``limit`` bytes (a ``Content-Length`` over it is refused before reading;
otherwise at most one chunk past the limit is read).
"""

from __future__ import annotations

import aiohttp

#: Bytes read from the network at a time.
CHUNK = 256 * 1024


async def read_answer(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    if resp.content_length is not None and resp.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
