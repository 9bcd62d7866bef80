-- The token that lets the front door read the notifier's internal routes (the sync facade's
-- wait): the same HMAC of FLUXGATE_INTERNAL_SECRET as apps/common/security/signing.py's
-- internal_read_token. The secret comes from the environment (`env` in nginx.conf), never from
-- the config file, and is hashed once per worker.
local M = {}
local token

function M.read_token()
  if not token then
    local secret = os.getenv("FLUXGATE_INTERNAL_SECRET") or ""
    if secret == "" then
      ngx.log(ngx.ERR, "FLUXGATE_INTERNAL_SECRET is not set: /sync waits will be refused")
    end
    token = ngx.encode_base64(ngx.hmac_sha1(secret, "fluxgate-internal-read"))
  end
  return token
end

return M
