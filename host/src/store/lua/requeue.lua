-- KEYS: queue, processing. ARGV: job, now.
-- Moves an orphaned job back to the queue if it is still in processing and still has
-- no lease (checked again here, atomically). Returns 1 when moved.
local id = redis.sha1hex(ARGV[1])
if redis.call('EXISTS', lease_key(id)) == 1 then return 0 end
if redis.call('LREM', KEYS[2], -1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
mark_queued(ARGV[1], id, ARGV[2])
return 1
