-- KEYS: queue. ARGV: full_path, job, now, marker_ttl_ms, cooldown_ms.
-- Refused (returns {-1, ms left}) while the path's cooldown key lives. Otherwise sets
-- it, deletes the entry and the error, then enqueues, unless a queued job is really
-- still in the queue (it will run after the reload anyway). A running job does not
-- count: its result predates the reload.
local fp = ARGV[1]
if tonumber(ARGV[5]) > 0 then
  local cooldown = PREFIX .. 'reload:' .. fp
  if not redis.call('SET', cooldown, ARGV[3], 'PX', ARGV[5], 'NX') then
    return {-1, redis.call('PTTL', cooldown)}
  end
end
local cache = redis.call('DEL', fp)
local err = redis.call('DEL', 'error:' .. fp)
local marker = marker_key(fp)
local enqueued = 1
if redis.call('HGET', marker, 'state') == 'queued' then
  local raw = redis.call('HGET', marker, 'raw')
  if raw and redis.call('LPOS', KEYS[1], raw) then enqueued = 0 end
end
if enqueued == 1 then push(KEYS[1], fp, ARGV[2], ARGV[3], ARGV[4]) end
return {cache, err, enqueued}
