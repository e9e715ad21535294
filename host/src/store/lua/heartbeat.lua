-- ARGV: lease_ms, marker_ttl_ms, then the running jobs.
-- Renews their leases and their paths' markers; returns how many leases had already
-- expired.
local lost = 0
for i = 3, #ARGV do
  local id = redis.sha1hex(ARGV[i])
  if redis.call('PEXPIRE', lease_key(id), ARGV[1]) == 0 then lost = lost + 1 end
  local fp = full_path_of(ARGV[i])
  if fp and redis.call('HGET', marker_key(fp), 'job') == id then
    redis.call('PEXPIRE', marker_key(fp), ARGV[2])
  end
end
return lost
