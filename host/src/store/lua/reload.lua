-- KEYS: queue, processing. ARGV: full_path, job, now, marker_ttl_ms, cooldown_ms.
-- Refused (returns {-1, ms left}) while the path's cooldown key lives. Otherwise sets
-- it, deletes the entry and the error, then enqueues, unless a queued job is really
-- still in the queue (it will run after the reload anyway). A running job is marked
-- to run again when it ends (finish.lua) instead of a second job running beside it: a
-- path never has two runs at once, however often it is reloaded. Its result is still
-- written when it ends, so reloads cannot keep a slow path unanswered; the run after
-- it is the one that started after the reload.
local fp = ARGV[1]
if tonumber(ARGV[5]) > 0 then
  local cooldown = reload_key(fp)
  if not redis.call('SET', cooldown, ARGV[3], 'PX', ARGV[5], 'NX') then
    return {-1, redis.call('PTTL', cooldown)}
  end
end
local cache = redis.call('DEL', entry_key(fp))
local err = redis.call('DEL', error_key(fp))
-- Servers' local caches drop their copy (server/local.rs).
redis.call('PUBLISH', INVALIDATE_CHANNEL, fp)
redis.call('DEL', retry_key(fp))
local marker = marker_key(fp)
local enqueued = 1
local state = redis.call('HMGET', marker, 'state', 'raw')
if state[1] == 'queued' then
  if state[2] and redis.call('LPOS', KEYS[1], state[2]) then enqueued = 0 end
elseif state[1] == 'running' and redis.call('LPOS', KEYS[2], state[2]) then
  redis.call('HSET', marker, 'rerun', 1)
  return {cache, err, 1}
end
if enqueued == 1 then push(KEYS[1], fp, ARGV[2], ARGV[3], ARGV[4]) end
return {cache, err, enqueued}
