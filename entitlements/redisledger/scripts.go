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
// (member "id:amount" -> expiry ms), tombstone zset (the members of expired
// leases -> purge time ms). ARGV[2]: tombstone retention in ms.
//
// The budget hash keeps two lower bounds so that the common call touches
// neither zset to find nothing: nx, before which no live lease expires, and
// tx, before which no tombstone is due (0 or absent: look now; MAXA: none).
// Every write of an expiry lowers them; a look that finds them due reclaims
// or purges and sets them to the earliest remaining score.
//
// reply(code, x) saves what changed and answers
// {code, x, win, now, window seconds, capped, cap, spent, reserved};
// brief(code) saves and answers {code}.
const luaBudget = luaNow + `
local B, L, T = KEYS[1], KEYS[2], KEYS[3]
local keep = tonumber(ARGV[2])
local f = redis.call('HMGET', B, 'wk', 'ws', 'cap', 'spent', 'reserved', 'win', 'nx', 'tx')
if not f[1] then return {0, 0, 0, now, 0, 0, 0, 0, 0} end
local rolling = f[1] == 'r'
local ws = tonumber(f[2]) or 0
local cap = tonumber(f[3])
local spent = tonumber(f[4]) or 0
local reserved = tonumber(f[5]) or 0
local win = tonumber(f[6])
local nx = tonumber(f[7]) or 0
local tx = tonumber(f[8]) or 0
local dirty = false

local function first(z)
  local r = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if r[2] then return tonumber(r[2]) end
  return MAXA
end

if now >= nx then
  local expired = redis.call('ZRANGEBYSCORE', L, '-inf', now)
  if #expired > 0 then
    local due = fmt(now + keep)
    for _, m in ipairs(expired) do
      reserved = reserved - tonumber(string.match(m, ':(%d+)$'))
      redis.call('ZADD', T, due, m)
    end
    redis.call('ZREMRANGEBYSCORE', L, '-inf', now)
    redis.call('HINCRBY', B, 'expired', #expired)
    tx = math.min(tx, now + keep)
  end
  nx = first(L)
  dirty = true
end
if now >= tx then
  redis.call('ZREMRANGEBYSCORE', T, '-inf', now)
  tx = first(T)
  dirty = true
end

if rolling then
  local w = math.floor(math.floor(now / 1000) / ws)
  if win == nil or w > win then
    win = w
    spent = 0
    dirty = true
  end
end

local function save()
  if not dirty then return end
  if rolling then
    redis.call('HSET', B, 'spent', fmt(spent), 'reserved', fmt(reserved), 'nx', fmt(nx), 'tx', fmt(tx), 'win', fmt(win))
  else
    redis.call('HSET', B, 'spent', fmt(spent), 'reserved', fmt(reserved), 'nx', fmt(nx), 'tx', fmt(tx))
  end
end

local function reply(code, x)
  save()
  local c = 0
  if cap then c = 1 end
  return {code, x or 0, win or 0, now, ws, c, cap or 0, spent, reserved}
end

-- brief(code) saves and answers {code} alone, for answers that need
-- nothing else (Finish's; Reserve's for a retried call).
local function brief(code)
  save()
  return {code}
end
`

// Reply codes of the budget scripts.
const (
	codeNoAccount = 0 // the budget hash does not exist
	codeOK        = 1
	codeOverCap   = 2 // x: what was available
	codeRetried   = 3 // reserve: the lease is already held (a retried call)
	codeOverflow  = 4 // the amount does not fit the ledger's numbers
	codeExpired   = 5 // the lease expired before this call
	codeGone      = 6 // the lease was settled or released
	codeRolling   = 7 // top-up of a rolling window
	codeUncapped  = 8 // top-up of an uncapped account
	codeZeroCap   = 9 // cap 0 on a rolling window
)

// luaReserve holds ARGV[4] (amount) under lease id ARGV[3] for ARGV[5] ms.
// The lease is added first, so that a retried call finds it and answers
// codeRetried instead of counting the amount against itself; a refused
// reserve takes it out again.
const luaReserve = luaBudget + `
local amount, exp = tonumber(ARGV[4]), now + tonumber(ARGV[5])
local m = ARGV[3] .. ':' .. ARGV[4]
if redis.call('ZADD', L, 'NX', fmt(exp), m) == 0 then return brief(3) end
local code, avail = 1, 0
if cap then
  avail = cap - reserved - spent
  if amount > avail then code = 2 end
  if avail < 0 then avail = 0 end
elseif amount > MAXA - reserved then
  code = 4
end
if code ~= 1 then
  redis.call('ZREM', L, m)
  return reply(code, avail)
end
reserved = reserved + amount
nx = math.min(nx, exp)
dirty = true
return reply(1)
`

// luaFinish consumes the lease of id ARGV[3] and amount ARGV[4]: settles
// ARGV[5] when ARGV[6] is "s", releases when it is "r". An expired lease is
// consumed too (its amount was already returned); a settle still records
// its spend.
const luaFinish = luaBudget + `
local m = ARGV[3] .. ':' .. ARGV[4]
local late = false
if redis.call('ZREM', L, m) == 1 then
  reserved = reserved - tonumber(ARGV[4])
elseif redis.call('ZREM', T, m) == 1 then
  late = true
else
  return brief(6)
end
if ARGV[6] == 's' then
  spent = math.min(spent + tonumber(ARGV[5]), MAXA)
end
dirty = true
if late then return brief(5) end
return brief(1)
`

// luaRenew moves the expiry of the live lease of id ARGV[3] and amount
// ARGV[4] to now + ARGV[5] ms.
const luaRenew = luaBudget + `
local m = ARGV[3] .. ':' .. ARGV[4]
if not redis.call('ZSCORE', L, m) then
  if redis.call('ZSCORE', T, m) then return reply(5) end
  return reply(6)
end
local exp = now + tonumber(ARGV[5])
redis.call('ZADD', L, 'XX', fmt(exp), m)
nx = math.min(nx, exp)
dirty = true
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
// of key records, the model allow-list ("" for every model; records
// written before allow-lists have no field, which reads as ""). It answers
// {1} when added, {0} when the digest exists, and {2, digest} when another
// key of the account has the same key id and other limits.
const luaAddKey = luaNow + `
local K, I, S = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', K) == 1 then return {0} end
for _, d in ipairs(redis.call('SMEMBERS', I)) do
  local r = redis.call('HMGET', ARGV[9] .. d, 'key_id', 'clamp', 'inflight', 'rpm', 'models')
  if r[1] == ARGV[4] and (r[2] ~= ARGV[6] or r[3] ~= ARGV[7] or r[4] ~= ARGV[8] or (r[5] or '') ~= ARGV[10]) then
    return {2, d}
  end
end
redis.call('HSET', K, 'account', ARGV[3], 'key_id', ARGV[4], 'unit', ARGV[5],
  'clamp', ARGV[6], 'inflight', ARGV[7], 'rpm', ARGV[8], 'created', fmt(now))
if ARGV[10] ~= '' then redis.call('HSET', K, 'models', ARGV[10]) end
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

// luaAcquire admits one request of a key with limits: ARGV[2] requests in
// flight at most (0: none), ARGV[3] per minute at most (0: none), as slot
// ARGV[4] held for ARGV[5] ms. KEYS: the key's slots (zset: id -> expiry
// ms), the key's GCRA time (string: µs). It answers {0, 0} when admitted,
// {1, 0} when max_in_flight refuses and {2, µs to wait} when rpm refuses;
// a refusal changes nothing. The GCRA is entitlements.KeyLimiter's: a
// burst of rpm, then one every minute / rpm.
const luaAcquire = luaNow + `
local S, R = KEYS[1], KEYS[2]
local maxf, rpm, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
if maxf > 0 then
  redis.call('ZREMRANGEBYSCORE', S, '-inf', now)
  if redis.call('ZCARD', S) >= maxf then return {1, 0} end
end
if rpm > 0 then
  local nowus = now * 1000
  local interval = math.max(math.floor(60000000 / rpm), 1)
  local tat = tonumber(redis.call('GET', R)) or 0
  if tat < nowus then tat = nowus end
  local early = tat - nowus - interval * (rpm - 1)
  if early > 0 then return {2, early} end
  tat = tat + interval
  redis.call('SET', R, fmt(tat), 'PX', math.floor((tat - nowus) / 1000) + 1)
end
if maxf > 0 then
  redis.call('ZADD', S, fmt(now + ttl), ARGV[4])
  if redis.call('PTTL', S) < ttl then redis.call('PEXPIRE', S, ttl) end
end
return {0, 0}
`

// luaRenewSlot moves the expiry of slot ARGV[2] of KEYS[1] to now + ARGV[3]
// ms. It answers 1, or 0 when the slot is gone (released or expired).
const luaRenewSlot = luaNow + `
local S, id, ttl = KEYS[1], ARGV[2], tonumber(ARGV[3])
if not redis.call('ZSCORE', S, id) then return 0 end
redis.call('ZADD', S, fmt(now + ttl), id)
if redis.call('PTTL', S) < ttl then redis.call('PEXPIRE', S, ttl) end
return 1
`

// luaResolve reads key record KEYS[1]: a script only so that Resolve goes
// through the ledger's pipelines with the budget calls.
const luaResolve = `return redis.call('HGETALL', KEYS[1])`

// scripts are the ledger's scripts, built per Ledger so that nothing is
// shared between ledgers.
type scripts struct {
	reserve, finish, renew, snapshot, topUp, setCap *redis.Script
	ensureAccount, addKey, revoke                   *redis.Script
	acquire, renewSlot, resolve                     *redis.Script
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
		acquire:       redis.NewScript(luaAcquire),
		renewSlot:     redis.NewScript(luaRenewSlot),
		resolve:       redis.NewScript(luaResolve),
	}
}
