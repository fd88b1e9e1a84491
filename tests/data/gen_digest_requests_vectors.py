# Generates digest vectors with python-requests HTTPDigestAuth (it has no SHA-256-sess or auth-int).
import json, requests
from requests.auth import HTTPDigestAuth
out = []
cases = [
  ("MD5", "auth"), ("MD5", None), ("MD5-SESS", "auth"), ("SHA-256", "auth"),
  ("SHA-256", None),
]
users = [("1001", "alpha", "gate.example"), ("Mufasa", "Circle of Life", "http-auth@example.org")]
for alg, qop in cases:
    for user, pw, realm in users:
        a = HTTPDigestAuth(user, pw)
        a.init_per_thread_state()
        chal = {"realm": realm, "nonce": "0123456789abcdef0123456789abcdef0123456789abcdef", "algorithm": alg, "opaque": "op"}
        if qop: chal["qop"] = qop
        a._thread_local.chal = chal
        for i in range(2):
            h = a.build_digest_header("MESSAGE", "sip:maint@gate.example/x")
            out.append({"password": pw, "method": "MESSAGE", "header": h})
print(json.dumps(out, indent=1))
