-- KEYS: queue, processing. ARGV: max, worker, now, lease_ms, marker_ttl_ms.
-- Moves up to max jobs to processing and starts them. Returns raw, id, attempts triples.
local out = {}
for _ = 1, tonumber(ARGV[1]) do
  local raw = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not raw then break end
  local started = start(raw, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
  out[#out + 1] = raw
  out[#out + 1] = started[1]
  out[#out + 1] = started[2]
end
return out
