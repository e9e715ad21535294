-- KEYS: queue, processing. ARGV: job, id, now.
-- A draining worker returns a job it will not run: back to the consumer end of the
-- queue, lease dropped, the attempt not counted.
if redis.call('LREM', KEYS[2], -1, ARGV[1]) > 0 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
redis.call('DEL', lease_key(ARGV[2]))
local fp = full_path_of(ARGV[1])
if fp and redis.call('HGET', marker_key(fp), 'job') == ARGV[2] then
  redis.call('HINCRBY', marker_key(fp), 'attempts', -1)
elseif redis.call('EXISTS', attempts_key(ARGV[2])) == 1 then
  redis.call('DECR', attempts_key(ARGV[2]))
end
mark_queued(ARGV[1], ARGV[2], ARGV[3])
return 1
