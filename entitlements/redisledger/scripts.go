package redisledger

import "github.com/redis/go-redis/v9"

// The Lua scripts of the ledger. Every script reads "now" from ARGV[1]
// (Unix milliseconds from the ledger's clock) or, when ARGV[1] is empty, from
// the server's TIME, so that all replicas share one clock by default.
//
// Numbers: Redis runs Lua 5.1, whose numbers are doubles, so amounts are
// limited to MaxAmount (2^53 - 1) and every number written back is formatted
// with %d to keep it an exact integer string.

// luaNow is the shared opening of every script that needs the time.
const luaNow = `
if redis.replicate_commands then redis.replicate_commands() end
local MAXA = 9007199254740991
local function fmt(n) return string.format('%d', n) end
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// luaBudget loads an account's budget, reclaims its expired leases, purges
// old tombstones and rolls its window. KEYS: budget hash, live lease zset
// (id -> expiry ms), lease hash (id -> amount, or "x"..amount once expired),
// tombstone zset (id -> purge time ms). ARGV[2]: tombstone retention in ms.
//
// reply(code, x) saves what changed and answers
// {code, x, win, now, window seconds, capped, cap, spent, reserved}.
const luaBudget = luaNow + `
local B, L, A, T = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local keep = tonumber(ARGV[2])
local f = redis.call('HMGET', B, 'wk', 'ws', 'cap', 'spent', 'reserved', 'win')
if not f[1] then return {0, 0, 0, now, 0, 0, 0, 0, 0} end
local rolling = f[1] == 'r'
local ws = tonumber(f[2]) or 0
local cap = tonumber(f[3])
local spent = tonumber(f[4]) or 0
local reserved = tonumber(f[5]) or 0
local win = tonumber(f[6])
local dirty = false

local expired = redis.call('ZRANGEBYSCORE', L, '-inf', now)
if #expired > 0 then
  local n = 0
  for _, id in ipairs(expired) do
    local v = redis.call('HGET', A, id)
    if v and string.sub(v, 1, 1) ~= 'x' then
      reserved = reserved - tonumber(v)
      redis.call('HSET', A, id, 'x' .. v)
      redis.call('ZADD', T, fmt(now + keep), id)
      n = n + 1
    end
  end
  redis.call('ZREMRANGEBYSCORE', L, '-inf', now)
  redis.call('HINCRBY', B, 'expired', n)
  dirty = true
end
local dead = redis.call('ZRANGEBYSCORE', T, '-inf', now)
if #dead > 0 then
  for _, id in ipairs(dead) do redis.call('HDEL', A, id) end
  redis.call('ZREMRANGEBYSCORE', T, '-inf', now)
end

if rolling then
  local w = math.floor(math.floor(now / 1000) / ws)
  if win == nil or w > win then
    win = w
    spent = 0
    dirty = true
  end
end

local function reply(code, x)
  if dirty then
    if rolling then
      redis.call('HSET', B, 'spent', fmt(spent), 'reserved', fmt(reserved), 'win', fmt(win))
    else
      redis.call('HSET', B, 'spent', fmt(spent), 'reserved', fmt(reserved))
    end
  end
  local c = 0
  if cap then c = 1 end
  return {code, x or 0, win or 0, now, ws, c, cap or 0, spent, reserved}
end
`

// Reply codes of the budget scripts.
const (
	codeNoAccount = 0 // the budget hash does not exist
	codeOK        = 1
	codeOverCap   = 2 // x: what was available
	codeRetried   = 3 // reserve: the lease id is already held (a retried call)
	codeOverflow  = 4 // the amount does not fit the ledger's numbers
	codeExpired   = 5 // the lease expired before this call
	codeGone      = 6 // the lease was settled or released
	codeRolling   = 7 // top-up of a rolling window
	codeUncapped  = 8 // top-up of an uncapped account
	codeZeroCap   = 9 // cap 0 on a rolling window
)

// luaReserve holds ARGV[4] (amount) under lease id ARGV[3] for ARGV[5] ms.
const luaReserve = luaBudget + `
local id, amount, ttl = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HEXISTS', A, id) == 1 then return reply(3) end
if cap then
  local avail = cap - reserved - spent
  if amount > avail then
    if avail < 0 then avail = 0 end
    return reply(2, avail)
  end
elseif amount > MAXA - reserved then
  return reply(4)
end
reserved = reserved + amount
dirty = true
redis.call('HSET', A, id, ARGV[4])
redis.call('ZADD', L, fmt(now + ttl), id)
return reply(1)
`

// luaFinish consumes lease ARGV[3]: settles ARGV[4] when ARGV[5] is "s",
// releases when it is "r". An expired lease is consumed too (its amount was
// already returned); a settle still records its spend.
const luaFinish = luaBudget + `
local id = ARGV[3]
local v = redis.call('HGET', A, id)
if not v then return reply(6) end
local late = string.sub(v, 1, 1) == 'x'
redis.call('HDEL', A, id)
if late then
  redis.call('ZREM', T, id)
else
  reserved = reserved - tonumber(v)
  redis.call('ZREM', L, id)
end
if ARGV[5] == 's' then
  spent = math.min(spent + tonumber(ARGV[4]), MAXA)
end
dirty = true
if late then return reply(5) end
return reply(1)
`

// luaRenew moves the expiry of live lease ARGV[3] to now + ARGV[4] ms.
const luaRenew = luaBudget + `
local id = ARGV[3]
local v = redis.call('HGET', A, id)
if not v then return reply(6) end
if string.sub(v, 1, 1) == 'x' then return reply(5) end
redis.call('ZADD', L, 'XX', fmt(now + tonumber(ARGV[4])), id)
return reply(1)
`

// luaSnapshot answers the budget; x is the count of leases ever reclaimed.
const luaSnapshot = luaBudget + `
return reply(1, tonumber(redis.call('HGET', B, 'expired')) or 0)
`

// luaTopUp raises the cap of a capped balance by ARGV[3].
const luaTopUp = luaBudget + `
if rolling then return reply(7) end
if not cap then return reply(8) end
local n = tonumber(ARGV[3])
if n > MAXA - cap then return reply(4) end
cap = cap + n
redis.call('HSET', B, 'cap', fmt(cap))
return reply(1)
`

// luaSetCap sets the cap to ARGV[3], or removes it when ARGV[3] is empty.
const luaSetCap = luaBudget + `
if ARGV[3] == '' then
  cap = nil
  redis.call('HDEL', B, 'cap')
else
  local n = tonumber(ARGV[3])
  if rolling and n == 0 then return reply(9) end
  cap = n
  redis.call('HSET', B, 'cap', ARGV[3])
end
return reply(1)
`

// luaEnsureAccount creates budget hash KEYS[1] when it is missing and
// ARGV[2] is "1" (unit ARGV[3], window kind ARGV[4] and seconds ARGV[5], cap
// ARGV[6] or "" for none). It answers {1} when it created the account, {0}
// when the account is missing and no budget was given, and
// {2, unit, kind, seconds, cap or ""} when the account exists.
const luaEnsureAccount = luaNow + `
local B = KEYS[1]
local cur = redis.call('HMGET', B, 'unit', 'wk', 'ws', 'cap')
if cur[2] then return {2, cur[1] or '', cur[2], cur[3] or '0', cur[4] or ''} end
if ARGV[2] ~= '1' then return {0} end
redis.call('HSET', B, 'unit', ARGV[3], 'wk', ARGV[4], 'ws', ARGV[5],
  'spent', '0', 'reserved', '0', 'expired', '0', 'created', fmt(now))
if ARGV[6] ~= '' then redis.call('HSET', B, 'cap', ARGV[6]) end
return {1}
`

// luaAddKey writes key record KEYS[1] unless it exists, and indexes it in
// the account's digest set KEYS[2] and the account set KEYS[3]. ARGV: now,
// digest (hex), account, key id, unit, clamp, max in flight, rpm, the prefix
// of key records. It answers {1} when added, {0} when the digest exists, and
// {2, digest} when another key of the account has the same key id and other
// limits.
const luaAddKey = luaNow + `
local K, I, S = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', K) == 1 then return {0} end
for _, d in ipairs(redis.call('SMEMBERS', I)) do
  local r = redis.call('HMGET', ARGV[9] .. d, 'key_id', 'clamp', 'inflight', 'rpm')
  if r[1] == ARGV[4] and (r[2] ~= ARGV[6] or r[3] ~= ARGV[7] or r[4] ~= ARGV[8]) then
    return {2, d}
  end
end
redis.call('HSET', K, 'account', ARGV[3], 'key_id', ARGV[4], 'unit', ARGV[5],
  'clamp', ARGV[6], 'inflight', ARGV[7], 'rpm', ARGV[8], 'created', fmt(now))
redis.call('SADD', I, ARGV[2])
redis.call('SADD', S, ARGV[3])
return {1}
`

// luaRevoke marks key record KEYS[1] revoked at now. It answers {0} when
// the record does not exist, {1, now} when it revoked it and
// {2, revoked at} when it was already revoked.
const luaRevoke = luaNow + `
local K = KEYS[1]
if redis.call('EXISTS', K) == 0 then return {0} end
local at = redis.call('HGET', K, 'revoked')
if at then return {2, tonumber(at)} end
redis.call('HSET', K, 'revoked', fmt(now))
return {1, now}
`

// scripts are the ledger's scripts, built per Ledger so that nothing is
// shared between ledgers.
type scripts struct {
	reserve, finish, renew, snapshot, topUp, setCap *redis.Script
	ensureAccount, addKey, revoke                   *redis.Script
}

func newScripts() scripts {
	return scripts{
		reserve:       redis.NewScript(luaReserve),
		finish:        redis.NewScript(luaFinish),
		renew:         redis.NewScript(luaRenew),
		snapshot:      redis.NewScript(luaSnapshot),
		topUp:         redis.NewScript(luaTopUp),
		setCap:        redis.NewScript(luaSetCap),
		ensureAccount: redis.NewScript(luaEnsureAccount),
		addKey:        redis.NewScript(luaAddKey),
		revoke:        redis.NewScript(luaRevoke),
	}
}
