-- KEYS: queue, processing. ARGV: full_path, job, now, marker_ttl_ms, verify_after_s.
-- Pushes the job unless the path already has one queued or running, or its last run
-- failed moments ago (httpsd:retry:<full_path>, set by finish.lua).
-- A marker older than verify_after_s must still have its job: after a Redis failover
-- (replication is asynchronous) a marker can outlive the job it names, and it would
-- keep the path from being enqueued until its TTL. A queued job must be in the queue
-- or (moved by a BLMOVE a moment ago) in processing; a running one must have its
-- lease. A running job whose lease is gone (its worker died, or a failover lost its
-- result) goes back to the queue now, as the reaper would; a vanished one is replaced
-- by this job. The look is from the consumer ends of the lists, where an old job is,
-- and only for old markers, so polls do not scan the queue.
if redis.call('EXISTS', retry_key(ARGV[1])) == 1 then return 0 end
local m = redis.call('HMGET', marker_key(ARGV[1]), 'state', 'raw', 'job', 'since')
if m[1] then
  if not m[2] or tonumber(ARGV[3]) - (tonumber(m[4]) or 0) < tonumber(ARGV[5]) then
    return 0
  end
  if m[1] == 'queued' then
    if redis.call('LPOS', KEYS[1], m[2], 'RANK', -1)
        or redis.call('LPOS', KEYS[2], m[2], 'RANK', -1) then
      return 0
    end
  elseif m[1] == 'running' then
    if redis.call('EXISTS', lease_key(m[3])) == 1 then return 0 end
    if redis.call('LREM', KEYS[2], -1, m[2]) > 0 then
      redis.call('RPUSH', KEYS[1], m[2])
      mark_queued(m[2], m[3], ARGV[3])
      return 1
    end
  else
    return 0
  end
end
push(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
