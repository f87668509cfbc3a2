-- GET /api/v1/jobs/{id} for ids picked at random from $BENCH_IDS_FILE.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do ids[#ids + 1] = line end
init = function(args)
  math.randomseed(os.time() + tonumber(string.sub(tostring({}), 8), 16) % 100000)
end
request = function()
  return wrk.format("GET", "/api/v1/jobs/" .. ids[math.random(#ids)])
end
