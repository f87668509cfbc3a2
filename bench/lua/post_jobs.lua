-- POST /api/v1/jobs with the body in $BENCH_BODY_FILE; with $BENCH_QUOTA each thread stops
-- after that many answers (the bench then ends wrk with SIGINT).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "r"))
wrk.body = f:read("*a")
f:close()
local quota = tonumber(os.getenv("BENCH_QUOTA") or "")
if quota then
  local answered = 0
  response = function(status, headers, body)
    answered = answered + 1
    if answered >= quota then wrk.thread:stop() end
  end
  local sent = 0
  request = function()
    sent = sent + 1
    return wrk.format()
  end
end
