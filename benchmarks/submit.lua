-- wrk script for benchmarks/submit.py: POST /flux with a small job, and a key when BENCH_TOKEN is set.
wrk.method = "POST"
wrk.body = '{"prompt":"a red fox in the snow","width":256,"height":256,"num_inference_steps":4}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
