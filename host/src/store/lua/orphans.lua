-- KEYS: processing. Returns the jobs in processing without a lease.
local out = {}
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, 9999)) do
  if redis.call('EXISTS', lease_key(redis.sha1hex(raw))) == 0 then out[#out + 1] = raw end
end
return out
