-- mix.lua - wrk script of the soak: GET /v1/neighbors?word=W&k=K over many
-- words and GET /v1/analogy?q=B-A+C, counting responses by status.
--
-- usage: wrk ... -s mix.lua URL -- WORDS ANALOGIES [SHARE]
--   WORDS      file of words, one a line (neighbour queries)
--   ANALOGIES  file of "a b c" lines: asks for b - a + c (analogy queries)
--   SHARE      fraction of requests that are analogies (default 0.3)
--
-- Each wrk thread has its own Lua state: response() counts into the
-- thread's global table `statuses`, and done() (in the main state) adds
-- the threads' tables up through thread:get. done() prints one line per
-- status and one summary line starting "mix:", which soak.sh reads.

local threads = {}
local words, analogies = {}, {}
local share = 0.3
local ks = { 1, 5, 10, 10, 10, 20, 50 }
statuses = {}

-- percent-encodes everything but unreserved characters (RFC 3986)
local function escape(s)
    return (s:gsub("[^%w%-%._~]", function(c)
        return string.format("%%%02X", string.byte(c))
    end))
end

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then
            words[#words + 1] = escape(line)
        end
    end
    for line in io.lines(args[2]) do
        local a, b, c = line:match("^(%S+) (%S+) (%S+)$")
        if a then
            analogies[#analogies + 1] =
                escape(b) .. "-" .. escape(a) .. "+" .. escape(c)
        end
    end
    if #words == 0 then
        error("mix.lua: no words in " .. tostring(args[1]))
    end
    share = tonumber(args[3] or "") or share
    math.randomseed(os.time() * 1000 + id)
end

function request()
    if #analogies > 0 and math.random() < share then
        local q = analogies[math.random(#analogies)]
        return wrk.format("GET", "/v1/analogy?q=" .. q)
    end
    local w = words[math.random(#words)]
    local k = ks[math.random(#ks)]
    return wrk.format("GET", "/v1/neighbors?word=" .. w .. "&k=" .. k)
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total, n5xx, nother = {}, 0, 0
    for _, t in ipairs(threads) do
        for s, n in pairs(t:get("statuses")) do
            total[s] = (total[s] or 0) + n
        end
    end
    local keys = {}
    for s in pairs(total) do
        keys[#keys + 1] = s
    end
    table.sort(keys)
    for _, s in ipairs(keys) do
        io.write(string.format("mix: status %d %d\n", s, total[s]))
        if s >= 500 then
            n5xx = n5xx + total[s]
        elseif s ~= 200 then
            nother = nother + total[s]
        end
    end
    local e = summary.errors
    io.write(string.format(
        "mix: requests=%d seconds=%.1f 5xx=%d other=%d connect=%d " ..
        "read=%d write=%d timeout=%d p50_ms=%.2f p99_ms=%.2f " ..
        "max_ms=%.2f\n",
        summary.requests, summary.duration / 1e6, n5xx, nother,
        e.connect, e.read, e.write, e.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency.max / 1000))
end
