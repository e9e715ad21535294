-- KEYS: processing. ARGV: lease_ms, marker_ttl_ms, then the running jobs.
-- Renews their leases and their paths' markers; returns how many leases had already
-- expired while their job was still in processing (a job finished a moment ago has no
-- lease either, but it is not lost).
local lost = 0
for i = 3, #ARGV do
  local id = redis.sha1hex(ARGV[i])
  if redis.call('PEXPIRE', lease_key(id), ARGV[1]) == 0 then
    if redis.call('LPOS', KEYS[1], ARGV[i]) then lost = lost + 1 end
  else
    local fp = full_path_of(ARGV[i])
    if fp and redis.call('HGET', marker_key(fp), 'job') == id then
      redis.call('PEXPIRE', marker_key(fp), ARGV[2])
    end
  end
end
return lost
