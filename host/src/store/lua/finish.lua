-- KEYS: processing, queue. ARGV: cache_ttl_ms, error_ttl_ms, history_len, now,
-- marker_ttl_ms, retry_ms, then per finished job seven values: job, id, full_path, kind (1 entry
-- | 0 error | x discard), entry or error, run report, history summary.
-- For each job: writes the result (and drops the old error) or the error (keeping the
-- last good entry), records the run, drops the job from processing, and clears the
-- path's marker if it is this job's and running (a job queued again meanwhile, by the
-- reaper or a hand-back, keeps it). A job its path was reloaded during (marker field
-- rerun, reload.lua) still writes its result, so a client reloading a slow path again
-- and again cannot keep it unanswered, and is then queued once more for the reload.
-- One script for a whole batch: one round trip, one script call. Commands per job are
-- counted: they are most of Redis's work per job.
local cache_ttl, error_ttl, history_len = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, marker_ttl, retry = ARGV[4], ARGV[5], ARGV[6]
for i = 7, #ARGV, 7 do
  local raw, id, fp, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  -- From the tail: jobs are moved in at the head, so the oldest (usually the one
  -- finishing) is near the tail and the scan is short.
  redis.call('LREM', KEYS[1], -1, raw)
  local marker = marker_key(fp)
  local owner = redis.call('HMGET', marker, 'job', 'state', 'rerun')
  local mine = owner[1] == id and owner[2] == 'running'
  if kind == '1' then
    redis.call('DEL', lease_key(id), attempts_key(id), error_key(fp))
    redis.call('SET', entry_key(fp), ARGV[i + 4], 'PX', cache_ttl)
    -- Servers' local caches drop their copy (server/local.rs).
    redis.call('PUBLISH', INVALIDATE_CHANNEL, fp)
  else
    redis.call('DEL', lease_key(id), attempts_key(id))
    if kind == '0' then
      redis.call('SET', error_key(fp), ARGV[i + 4], 'PX', error_ttl)
      -- Polls do not run a path that just failed again for a while (enqueue.lua).
      redis.call('SET', retry_key(fp), 1, 'PX', retry)
    end
  end
  if kind ~= 'x' then
    redis.call('SET', run_key(fp), ARGV[i + 5], 'PX', cache_ttl)
    if ARGV[i + 6] ~= '' then
      -- Readers take the first history_len; trimming (and renewing the TTL) only when
      -- the list is new or twice that long keeps it off most runs.
      local history = history_key(fp)
      local n = redis.call('LPUSH', history, ARGV[i + 6])
      if n > 2 * history_len then redis.call('LTRIM', history, 0, history_len - 1) end
      if n == 1 or n > 2 * history_len then redis.call('PEXPIRE', history, cache_ttl) end
    end
  end
  if mine then
    if owner[3] then
      push(KEYS[2], fp, raw, now, marker_ttl)
    else
      redis.call('DEL', marker)
    end
  end
end
return 1
