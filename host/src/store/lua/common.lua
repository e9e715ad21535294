-- Helpers prepended to every httpsd script. Key names come from src/wire.rs: the
-- MARKER_PREFIX, LEASE_PREFIX, ... and INVALIDATE_CHANNEL locals used here are defined
-- above this file by store/redis/scripts.rs from the Rust consts of the same names, so
-- no script spells a key itself (on a Redis Cluster each prefix starts with the hash
-- tag {httpsd}, so every key of httpsd is in one slot). httpsd:job:<full_path> is a path's dedupe marker (a
-- hash: state queued|running, job = sha1 of the job's JSON, raw, worker, since),
-- httpsd:lease:<sha1> a running job's lease, httpsd:attempts:<sha1> how often it was
-- taken, httpsd:run:<full_path> the last run's report. A job's id is the sha1 of its
-- exact bytes in the lists. INVALIDATE_CHANNEL is the channel of server/local.rs: the
-- full_path of every entry written or deleted.
local function entry_key(full_path) return ENTRY_PREFIX .. full_path end
local function marker_key(full_path) return MARKER_PREFIX .. full_path end
local function lease_key(id) return LEASE_PREFIX .. id end
local function attempts_key(id) return ATTEMPTS_PREFIX .. id end
local function error_key(full_path) return ERROR_PREFIX .. full_path end
local function run_key(full_path) return RUN_PREFIX .. full_path end
local function history_key(full_path) return HISTORY_PREFIX .. full_path end
local function reload_key(full_path) return RELOAD_PREFIX .. full_path end
local function retry_key(full_path) return RETRY_PREFIX .. full_path end

local function full_path_of(raw)
  local ok, job = pcall(cjson.decode, raw)
  if ok and type(job) == 'table' and type(job.full_path) == 'string' then
    return job.full_path
  end
  return nil
end

-- LPUSHes a job and marks its path queued.
local function push(queue, full_path, raw, now, marker_ttl_ms)
  local marker = marker_key(full_path)
  redis.call('DEL', marker)
  redis.call('HSET', marker, 'state', 'queued', 'job', redis.sha1hex(raw), 'raw', raw,
    'worker', '', 'since', now)
  redis.call('PEXPIRE', marker, marker_ttl_ms)
  redis.call('LPUSH', queue, raw)
end

-- Marks a job's path queued again, if the marker is still this job's.
local function mark_queued(raw, id, now)
  local fp = full_path_of(raw)
  if fp and redis.call('HGET', marker_key(fp), 'job') == id then
    redis.call('HSET', marker_key(fp), 'state', 'queued', 'worker', '', 'since', now)
  end
end

-- A worker has just moved `raw` to processing: lease it, count the attempt, and mark
-- its path running (also for a job an old server pushed without a marker). The count
-- lives in the path's marker when the marker is this job's (the usual case, and one
-- command cheaper), else in httpsd:attempts:<id>.
local function start(raw, worker, now, lease_ms, marker_ttl_ms)
  local id = redis.sha1hex(raw)
  redis.call('SET', lease_key(id), worker, 'PX', lease_ms)
  local fp = full_path_of(raw)
  if fp then
    local marker = marker_key(fp)
    local owner = redis.call('HMGET', marker, 'job', 'attempts')
    if owner[1] == id or not owner[1] then
      local attempts = (tonumber(owner[2]) or 0) + 1
      redis.call('HSET', marker, 'state', 'running', 'job', id, 'raw', raw,
        'worker', worker, 'since', now, 'attempts', attempts)
      redis.call('PEXPIRE', marker, marker_ttl_ms)
      return {id, attempts}
    end
  end
  local attempts = redis.call('INCR', attempts_key(id))
  redis.call('EXPIRE', attempts_key(id), 86400)
  return {id, attempts}
end
