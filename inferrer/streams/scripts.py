"""The broker-side steps, as Lua scripts: each runs atomically in Redis, so a message's
acknowledgement and what it produced are written together or not at all.

An acknowledgement (XACK) answers 1 only for a message still pending in the group: a message that
another consumer settled meanwhile (it took the message over from a consumer that seemed dead)
answers 0, and nothing is written for it again. The output therefore holds each input once."""

from __future__ import annotations

# emit(key, state, reason): close one converge group. `complete` and, under the `partial` rule,
# `partial` groups go to the output; under `dead_letter` a partial one goes to the dead letter.
# ARGV layout shared by both converge scripts: [1] group-hash prefix, [2] on_timeout, [3] per-second
# counter prefix. KEYS: [1] open groups (a sorted set: key -> first message's time, ms),
# [2] output, [3] dead letter, [4] total written.
_STREAMS_ONLY = """
-- A key that holds something other than a stream is refused before anything is written: Redis
-- keeps a script's writes made before an error, and an acknowledgement must never stand alone.
local function streams_only(keys)
  for _, key in ipairs(keys) do
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' and kind ~= 'stream' then
      return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a stream')
    end
  end
  return nil
end
"""

_CONVERGE_COMMON = (
    _STREAMS_ONLY
    + """
local function id_less(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  if ams ~= bms then return tonumber(ams) < tonumber(bms) end
  return tonumber(aseq) < tonumber(bseq)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1]
end

local function emit(key, state, reason)
  local group = ARGV[1] .. key
  local parts = redis.call('HGETALL', group)
  local ids = {}
  local by_id = {}
  for i = 1, #parts, 2 do
    ids[#ids + 1] = parts[i]
    by_id[parts[i]] = parts[i + 1]
  end
  table.sort(ids, id_less)
  local ordered = {}
  for i = 1, #ids do ordered[i] = by_id[ids[i]] end
  local joined = '[' .. table.concat(ordered, ',') .. ']'
  local source_ids = cjson.encode(ids)
  if #ids == 0 then source_ids = '[]' end
  if state == 'complete' or ARGV[2] == 'partial' then
    redis.call('XADD', KEYS[2], '*', 'key', key, 'state', state, 'count', #ids,
      'source_ids', source_ids, 'parts', joined)
    local _, seconds = now_ms()
    redis.call('INCRBY', KEYS[4], 1)
    redis.call('INCRBY', ARGV[3] .. seconds, 1)
    redis.call('EXPIRE', ARGV[3] .. seconds, 120)
  else
    redis.call('XADD', KEYS[3], '*', 'key', key, 'reason', reason, 'count', #ids,
      'source_ids', source_ids, 'parts', joined)
  end
  redis.call('DEL', group)
  redis.call('ZREM', KEYS[1], key)
end
"""
)

# KEYS as _CONVERGE_COMMON, then [5] the input stream. ARGV as _CONVERGE_COMMON, then [4] consumer
# group, [5] message id, [6] key, [7] the part (JSON), [8] count, [9] max open, [10] timeout (s).
# Answers 'duplicate' (settled before), 'held' or 'joined'.
CONVERGE_ADD = (
    _CONVERGE_COMMON
    + """
local refused = streams_only({KEYS[2], KEYS[3]})
if refused then return refused end
if redis.call('XACK', KEYS[5], ARGV[4], ARGV[5]) == 0 then return 'duplicate' end
local key = ARGV[6]
if not redis.call('ZSCORE', KEYS[1], key) then
  while redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[9]) do
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
    emit(oldest, 'partial', 'closed early: more than ' .. ARGV[9] .. ' groups were open')
  end
  local now = now_ms()
  redis.call('ZADD', KEYS[1], now, key)
end
redis.call('HSET', ARGV[1] .. key, ARGV[5], ARGV[7])
if redis.call('HLEN', ARGV[1] .. key) >= tonumber(ARGV[8]) then
  emit(key, 'complete', '')
  return 'joined'
end
return 'held'
"""
)

# KEYS as _CONVERGE_COMMON. ARGV as _CONVERGE_COMMON, then [4] key, [5] timeout (ms), [6] count.
# Answers 1 when it closed the group (it was still open and older than the timeout), else 0.
CONVERGE_EXPIRE = (
    _CONVERGE_COMMON
    + """
local refused = streams_only({KEYS[2], KEYS[3]})
if refused then return refused end
local opened = redis.call('ZSCORE', KEYS[1], ARGV[4])
if not opened then return 0 end
local now = now_ms()
if now - tonumber(opened) < tonumber(ARGV[5]) then return 0 end
local have = redis.call('HLEN', ARGV[1] .. ARGV[4])
emit(ARGV[4], 'partial', 'timed out with ' .. have .. ' of ' .. ARGV[6] .. ' messages')
return 1
"""
)

# KEYS: [1] input, [2] output, [3] dead letter, [4] total written, [5] failure reasons (a hash).
# ARGV: [1] consumer group, [2] per-second counter prefix, then per message: its id, 'o' (output)
# or 'd' (dead letter), the number of field pairs, and the pairs. Answers {written, dead, duplicates}.
SETTLE = (
    _STREAMS_ONLY
    + """
local refused = streams_only({KEYS[2], KEYS[3]})
if refused then return refused end
local t = redis.call('TIME')
local i = 3
local written, dead, duplicates = 0, 0, 0
while i <= #ARGV do
  local id, where, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local fields = {}
  for j = 1, n * 2 do fields[j] = ARGV[i + 2 + j] end
  i = i + 3 + n * 2
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    redis.call('HDEL', KEYS[5], id)
    if where == 'o' then
      redis.call('XADD', KEYS[2], '*', unpack(fields))
      written = written + 1
    else
      redis.call('XADD', KEYS[3], '*', unpack(fields))
      dead = dead + 1
    end
  else
    duplicates = duplicates + 1
  end
end
if written > 0 then
  redis.call('INCRBY', KEYS[4], written)
  redis.call('INCRBY', ARGV[2] .. t[1], written)
  redis.call('EXPIRE', ARGV[2] .. t[1], 120)
end
return {written, dead, duplicates}
"""
)
