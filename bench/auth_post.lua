-- wrk script for the auth service bench: every request is a form POST with HTTP Basic.
-- The credentials and the body come from the environment (never from this file):
--   BENCH_AUTHZ  the whole Authorization header value ("Basic ...")
--   BENCH_BODY   the form body ("grant_type=client_credentials" or "token=...")
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTHZ") or ""
