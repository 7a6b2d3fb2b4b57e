"""The per-client and per-contribution limits of admission.py, counted in Redis for the S3
store, so that N receivers behind a balancer give a client what one receiver would, not N
times it.

    <base>:rate:<client>        hash {tokens, when}: the client's creation token bucket
    <base>:open-client:<client> sorted set of upload ids still being written, scored by when
                                each stops counting (creation + expire_after)
    <base>:open-owner:<owner>   the same per contribution (its Pcir-Upload-Secret's owner)
    <base>:client-of:<id>       which client an open upload counts against (nothing on the
                                store records an address: this key expires with the count)

One Lua script checks and takes in one step, so two receivers admitting the same client at
the same moment cannot both take its last place. The time is Redis's own (TIME), so the
receivers' clocks do not matter. An upload stops counting when it completes, a partial when
it holds all its bytes, or when it is removed; if a receiver dies before saying so, the count
goes at the score, as an unfinished upload expires. Keys expire on their own: nothing needs
cleaning up.

The quota (bytes held) stays per receiver over the bytes it is writing: see docs/SCALING.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pcir_upload.repository.receive.admission import Admission, client_busy, client_too_fast, owner_busy
from pcir_upload.repository.receive.index import UploadIndex
from pcir_upload.repository.receive.limits import RECORD_BYTES, Limits

# KEYS: rate, open-client, open-owner, client-of. ARGV: capacity, refill per second,
# client_uploads, secret_uploads, upload id, seconds an open upload counts, client ("" none),
# owner given ("1"/"0"). Returns {0} admitted, {1} client busy, {2, wait} too fast, {3} owner busy.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local capacity, refill = tonumber(ARGV[1]), tonumber(ARGV[2])
local keep = tonumber(ARGV[6])
local client, owner = ARGV[7] ~= '', ARGV[8] == '1'
if client then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {1} end
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'when')
  local tokens = tonumber(state[1]) or capacity
  local when = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - when) * refill)
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1
  elseif refill > 0 then wait = (1 - tokens) / refill
  else wait = 3600 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'when', tostring(now))
  local full = 3600
  if refill > 0 then full = (capacity - tokens) / refill end
  redis.call('PEXPIRE', KEYS[1], math.ceil(full * 1000) + 1000)
  if wait > 0 then return {2, tostring(wait)} end
end
if owner then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return {3} end
end
local ms = math.ceil(keep * 1000)
if client then
  redis.call('ZADD', KEYS[2], now + keep, ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ms)
  redis.call('SET', KEYS[4], ARGV[7], 'PX', ms)
end
if owner then
  redis.call('ZADD', KEYS[3], now + keep, ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ms)
end
return {0}
"""


class SharedAdmission(Admission):
    """Admission for the S3 store: the client and contribution limits in Redis, the quota over
    what this receiver is writing (its `index`), no disk to watch."""

    def __init__(self, limits: Limits, index: UploadIndex, redis: Callable[[], Any], key: Callable[[str, str], str]) -> None:
        super().__init__(None, limits, index)  # type: ignore[arg-type]
        self.redis = redis  # the running loop's client (redis.asyncio clients belong to one loop)
        self.key = key

    async def admit(self, upload_id: str, client: str | None, owner: str | None, length: int | None) -> None:
        """Raise unless a new upload may start now; if it may, it counts from now until closed()."""
        limits = self.limits
        if client is not None or owner is not None:
            keys = [self.key("rate", client or ""), self.key("open-client", client or ""),
                    self.key("open-owner", owner or ""), self.key("client-of", upload_id)]
            answer = await self.redis().eval(
                _ADMIT, len(keys), *keys, limits.client_creations, limits.client_creations / 60.0,
                limits.client_uploads, limits.secret_uploads, upload_id, max(1.0, limits.expire_after),
                client or "", "1" if owner is not None else "0",
            )
            code = int(answer[0])
            if code == 1:
                raise client_busy(limits)
            if code == 2:
                raise client_too_fast(limits, min(3600.0, float(answer[1])))
            if code == 3:
                raise owner_busy(limits)
        try:
            self.quota(RECORD_BYTES + (length or 0))
        except BaseException:
            await self.closed(upload_id, owner)
            raise

    async def closed(self, upload_id: str, owner: str | None) -> None:
        """The upload no longer counts (complete, a whole partial, or removed); idempotent."""
        redis = self.redis()
        client = await redis.getdel(self.key("client-of", upload_id))
        async with redis.pipeline(transaction=False) as pipe:
            if client is not None:
                pipe.zrem(self.key("open-client", client.decode()), upload_id)
            if owner is not None:
                pipe.zrem(self.key("open-owner", owner), upload_id)
            await pipe.execute()

    async def disk(self, more: int) -> None:
        return None  # the object store has no disk that fills up
