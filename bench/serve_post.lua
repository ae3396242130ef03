-- serve_post.lua: wrk script for bench/serve-load. POSTs the file $BODY_FILE to /api/predict
-- with Content-Type $BODY_TYPE, and counts replies other than 200 (wrk counts only >= 400
-- and socket errors on its own).
wrk.method = "POST"
wrk.path = "/api/predict"
wrk.headers["Content-Type"] = os.getenv("BODY_TYPE")
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
