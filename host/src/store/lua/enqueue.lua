-- KEYS: queue. ARGV: full_path, job, now, marker_ttl_ms.
-- Pushes the job unless the path already has one queued or running, or its last run
-- failed moments ago (httpsd:retry:<full_path>, set by finish.lua).
if redis.call('EXISTS', marker_key(ARGV[1]), retry_key(ARGV[1])) > 0 then return 0 end
push(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
