-- KEYS: queue, processing. ARGV: full_path, job, now, marker_ttl_ms, verify_after_s.
-- Pushes the job unless the path already has one queued or running, or its last run
-- failed moments ago (httpsd:retry:<full_path>, set by finish.lua).
-- A marker older than verify_after_s must still have its job: after a failover of
-- Redis (replication is asynchronous) a marker can survive while the job it names was
-- lost, and it would keep the path from being enqueued until its TTL. Such a marker is
-- replaced by this job. The look is from the consumer ends of the lists, where an old
-- job is, and only for old markers, so a poll does not scan the queue.
if redis.call('EXISTS', retry_key(ARGV[1])) == 1 then return 0 end
local m = redis.call('HMGET', marker_key(ARGV[1]), 'state', 'raw', 'job', 'since')
if m[1] then
  if tonumber(ARGV[3]) - (tonumber(m[4]) or 0) < tonumber(ARGV[5]) then return 0 end
  if m[1] == 'queued' and m[2] and redis.call('LPOS', KEYS[1], m[2], 'RANK', -1) then
    return 0
  end
  if m[1] == 'running' and m[2] and (redis.call('EXISTS', lease_key(m[3])) == 1
      or redis.call('LPOS', KEYS[2], m[2], 'RANK', -1)) then
    return 0
  end
  if m[1] ~= 'queued' and m[1] ~= 'running' then return 0 end
end
push(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
