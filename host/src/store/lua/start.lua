-- KEYS: processing (not touched: it routes the call to httpsd's slot on a cluster).
-- ARGV: job, worker, now, lease_ms, marker_ttl_ms.
-- Starts a job that a blocking BLMOVE moved to processing. Returns {id, attempts}.
return start(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
