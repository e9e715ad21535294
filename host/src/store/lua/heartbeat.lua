-- ARGV: lease_ms, marker_ttl_ms, then pairs of (job id, full_path).
-- Renews leases and markers; returns how many leases had already expired.
local lost = 0
for i = 3, #ARGV, 2 do
  if redis.call('PEXPIRE', lease_key(ARGV[i]), ARGV[1]) == 0 then lost = lost + 1 end
  local marker = marker_key(ARGV[i + 1])
  if redis.call('HGET', marker, 'job') == ARGV[i] then
    redis.call('PEXPIRE', marker, ARGV[2])
  end
end
return lost
