-- KEYS: processing. ARGV: job, id, full_path, kind (1 entry | 0 error | x discard),
-- entry or error, run report, cache_ttl_ms, error_ttl_ms.
-- Writes the result (and drops the old error) or the error (keeping the last good
-- entry), drops the job from processing and clears the path's marker if it is this
-- job's.
local raw, id, fp = ARGV[1], ARGV[2], ARGV[3]
-- From the tail: jobs are moved in at the head, so the oldest (usually the one
-- finishing) is near the tail and the scan is short.
redis.call('LREM', KEYS[1], -1, raw)
redis.call('DEL', lease_key(id), attempts_key(id))
if ARGV[4] == 'x' then return 1 end
if ARGV[4] == '1' then
  redis.call('SET', fp, ARGV[5], 'PX', ARGV[7])
  redis.call('DEL', 'error:' .. fp)
else
  redis.call('SET', 'error:' .. fp, ARGV[5], 'PX', ARGV[8])
end
redis.call('SET', PREFIX .. 'run:' .. fp, ARGV[6], 'PX', ARGV[7])
local marker = marker_key(fp)
if redis.call('HGET', marker, 'job') == id then redis.call('DEL', marker) end
return 1
