-- wrk script: POST distinct signed events, each thread its own share of bench's input file, so
-- no request is a duplicate (a duplicate costs the relay less than a new event).
-- The input path comes from the BENCH_INPUT environment variable.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local count = tonumber(os.getenv("BENCH_THREADS"))
  macs, bodies, n, i = {}, {}, 0, 0
  local line_no = 0
  for line in io.lines(os.getenv("BENCH_INPUT")) do
    if line_no % count == index then
      local tab = line:find("\t", 1, true)
      n = n + 1
      macs[n] = line:sub(1, tab - 1)
      bodies[n] = line:sub(tab + 1)
    end
    line_no = line_no + 1
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  i = i + 1
  if i > n then i = 1 end  -- wrapping around would send duplicates: size the input to the run
  return wrk.format(nil, nil, {["X-WMS-Content-MAC"] = macs[i], ["Content-Type"] = "application/json"}, bodies[i])
end
