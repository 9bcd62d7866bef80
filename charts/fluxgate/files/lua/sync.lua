-- The synchronous facade: `POST /sync/<task type>` submits the body to the gateway, holds the
-- request on the notifier's long-poll wait, and answers the finished job in one response.
-- Timing out answers 202 with the task's Location: a client never loses its task id.
local cjson = require "cjson.safe"

local DEFAULT_WAIT_S = 60
local MAX_WAIT_S = 300
-- Task type -> the gateway's submit route.
local SUBMIT_ROUTES = { flux = "/flux" }
local PASSED_FROM_GATEWAY = { "Content-Type", "Retry-After", "Location", "Idempotent-Replayed" }

local function respond(status, body, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  for name, value in pairs(headers or {}) do
    ngx.header[name] = value
  end
  ngx.print(body)
  return ngx.exit(status)
end

local function error_body(code, message, task_json)
  local err = cjson.encode({ error = { code = code, message = message } })
  if task_json == nil then
    return err
  end
  -- Splice the view in as the notifier wrote it, so its shape is exactly the API's.
  return err:sub(1, -2) .. ',"task":' .. task_json .. "}"
end

local function wait_seconds()
  local prefer = ngx.var.http_prefer
  local asked = prefer and tonumber(prefer:match("wait%s*=%s*(%d+)"))
  if asked == nil then
    return DEFAULT_WAIT_S
  end
  return math.min(asked, MAX_WAIT_S)
end

local function wants_image(accept)
  return accept ~= nil and accept:find("image/", 1, true) ~= nil
end

if ngx.req.get_method() ~= "POST" then
  return respond(405, error_body("method_not_allowed", "use POST"), { Allow = "POST" })
end
local task_type = ngx.var.uri:match("^/sync/([%w_%-]+)/?$")
local submit_route = task_type and SUBMIT_ROUTES[task_type]
if submit_route == nil then
  return respond(404, error_body("not_found", "no task type '" .. (task_type or "") .. "'"))
end

local accept = ngx.var.http_accept
local wait = wait_seconds()
ngx.req.read_body()
local body = ngx.req.get_body_data()
if body == nil and ngx.req.get_body_file() ~= nil then
  return respond(413, error_body("body_too_large", "request body is too large"))
end

-- Browsers and simple clients may pass the key as ?token= instead of a header.
local token = ngx.var.arg_token
if token ~= nil and ngx.var.http_authorization == nil then
  ngx.req.set_header("Authorization", "Bearer " .. ngx.unescape_uri(token))
end

-- Subrequests inherit the client's headers. Auth and Idempotency-Key must reach the gateway;
-- Prefer and Accept must not, or the gateway would wait (or answer) in our place.
ngx.req.clear_header("Prefer")
ngx.req.clear_header("Accept")
local submitted = ngx.location.capture("/_fluxgate/gateway" .. submit_route,
  { method = ngx.HTTP_POST, body = body or "" })
if submitted.status ~= 200 and submitted.status ~= 202 then
  -- The gateway's own refusal (422, 401, 429, 503...) goes back unchanged.
  ngx.status = submitted.status
  for _, name in ipairs(PASSED_FROM_GATEWAY) do
    ngx.header[name] = submitted.header[name]
  end
  ngx.print(submitted.body)
  return ngx.exit(submitted.status)
end

local answer = cjson.decode(submitted.body)
if answer == nil or answer.task_id == nil then
  return respond(502, error_body("unavailable", "the gateway answered an unexpected body"))
end
local location = { Location = answer.urls and answer.urls.status }

ngx.req.clear_header("Content-Type")
ngx.req.clear_header("Content-Length")
ngx.req.clear_header("Idempotency-Key")
ngx.req.clear_header("Cancel-After")
local waited = ngx.location.capture("/_fluxgate/wait/" .. answer.task_id,
  { method = ngx.HTTP_GET, args = { timeout = wait } })
if waited.status == 202 then
  return respond(202, waited.body, location)
end
if waited.status ~= 200 then
  ngx.log(ngx.WARN, "wait for ", answer.task_id, " answered ", waited.status)
  return respond(202, submitted.body, location)
end
if not wants_image(accept) then
  -- Any terminal state: the client reads `status`.
  return respond(200, waited.body)
end

local view = cjson.decode(waited.body)
if view.status == "succeeded" then
  local image = view.result.images[1]
  local file_path = image.url:match("/files/(.*)$")
  local file = file_path and ngx.location.capture("/_fluxgate/files/" .. file_path,
    { method = ngx.HTTP_GET })
  if file == nil or file.status ~= 200 then
    return respond(502, error_body("unavailable", "the image could not be read", waited.body))
  end
  ngx.status = 200
  ngx.header["Content-Type"] = file.header["Content-Type"] or image.content_type
  ngx.header["X-Fluxgate-Task-Id"] = view.task_id
  ngx.print(file.body)
  return ngx.exit(200)
end
if view.status == "failed" then
  local message = (view.error ~= cjson.null and view.error.message) or "the task failed"
  return respond(500, error_body("task_failed", message, waited.body))
end
return respond(409, error_body("task_canceled", "the task was " .. view.status, waited.body))
