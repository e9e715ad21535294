-- KEYS: processing. ARGV: cache_ttl_ms, error_ttl_ms, history_len, then per finished
-- job seven values: job, id, full_path, kind (1 entry | 0 error | x discard), entry or
-- error, run report, history summary.
-- For each job: writes the result (and drops the old error) or the error (keeping the
-- last good entry), records the run, drops the job from processing, and clears the
-- path's marker if it is this job's. One script for a whole batch: one round trip,
-- one script call.
local cache_ttl, error_ttl, history_last = ARGV[1], ARGV[2], tonumber(ARGV[3]) - 1
for i = 4, #ARGV, 7 do
  local raw, id, fp, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  -- From the tail: jobs are moved in at the head, so the oldest (usually the one
  -- finishing) is near the tail and the scan is short.
  redis.call('LREM', KEYS[1], -1, raw)
  redis.call('DEL', lease_key(id), attempts_key(id))
  if kind ~= 'x' then
    if kind == '1' then
      redis.call('SET', fp, ARGV[i + 4], 'PX', cache_ttl)
      redis.call('DEL', 'error:' .. fp)
    else
      redis.call('SET', 'error:' .. fp, ARGV[i + 4], 'PX', error_ttl)
    end
    redis.call('SET', PREFIX .. 'run:' .. fp, ARGV[i + 5], 'PX', cache_ttl)
    if ARGV[i + 6] ~= '' then
      local history = PREFIX .. 'history:' .. fp
      redis.call('LPUSH', history, ARGV[i + 6])
      redis.call('LTRIM', history, 0, history_last)
      redis.call('PEXPIRE', history, cache_ttl)
    end
    local marker = marker_key(fp)
    if redis.call('HGET', marker, 'job') == id then redis.call('DEL', marker) end
  end
end
return 1
