"""Writes the reg_*.xml SIPp registrar scenarios in this directory from one template.

The five registrars share their response headers, credential checks, expiry handling and
failure path; editing them by hand invites drift. Run `python3 tests/sipp/gen_registrars.py`
after changing this file and commit the regenerated XML with it.
"""
import os
OUT = os.path.dirname(os.path.abspath(__file__)) + '/'
def resp(code_reason, extra=''):
    extra_lines = ''.join('      %s\n' % l for l in extra.splitlines() if l)
    return f'''  <send>
    <![CDATA[

      SIP/2.0 {code_reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
{extra_lines}      Content-Length: 0

    ]]>
  </send>
'''
CONTACT = '''      <ereg regexp="sips?:[^&gt;;,[:space:]]+" search_in="hdr" header="Contact:" check_it="true" assign_to="curi" />
'''
EXPIRY = '''      <assignstr assign_to="cexp" value="0" />
      <assignstr assign_to="hexp" value="0" />
      <ereg regexp=";[[:space:]]*[Ee][Xx][Pp][Ii][Rr][Ee][Ss][[:space:]]*=[[:space:]]*([0-9]+)" search_in="hdr" header="Contact:" assign_to="_,cexp" />
      <ereg regexp="[0-9]+" search_in="hdr" header="Expires:" assign_to="hexp" />
'''
def creds(hdr, realm, nonce, opaque, qop_re, algo_re=None, resp_len=32):
    q='&quot;'
    lines = [
      f'realm={q}{realm}{q}', f'nonce={q}{nonce}{q}', f'opaque={q}{opaque}{q}',
      f'qop={q}?{qop_re}{q}?([ ,]|$)', f'cnonce={q}[^{q}]+{q}', f'nc={q}?[0-9a-fA-F]{{8}}{q}?([ ,]|$)',
      f'response={q}[0-9a-fA-F]{{{resp_len}}}{q}',
    ]
    if algo_re: lines.append(f'algorithm={q}?{algo_re}{q}?([ ,]|$)')
    return ''.join(f'      <ereg regexp="{r}" search_in="hdr" header="{hdr}" check_it="true" assign_to="_" />\n' for r in lines)
VERIFY = '''      <verifyauth assign_to="authok" username="[$user]" password="[$password]" />
'''
# Decide the granted expiry (Contact ;expires= wins over Expires, RFC 3261 §10.3 step 8),
# reject a REGISTER without any expiry, and optionally one below a minimum.
def grant(min_expires=None, fail_label='rejected', tag=''):
    s = f'''  <nop>
    <action>
      <todouble assign_to="cexpd" variable="cexp" />
      <todouble assign_to="hexpd" variable="hexp" />
      <test assign_to="no_cexp" variable="cexpd" compare="equal" value="0" />
      <test assign_to="no_hexp" variable="hexpd" compare="equal" value="0" />
      <assignstr assign_to="granted" value="[$hexp]" />
    </action>
  </nop>
  <nop test="no_cexp" next="header_expiry{tag}" />
  <nop>
    <action>
      <assignstr assign_to="granted" value="[$cexp]" />
    </action>
  </nop>
  <nop next="expiry_known{tag}" />
  <label id="header_expiry{tag}" />
  <!-- No expiry at all: the gate always asks for its configured expiry. -->
  <nop test="no_hexp" next="{fail_label}" />
  <label id="expiry_known{tag}" />
'''
    if min_expires:
        s += f'''  <nop>
    <action>
      <todouble assign_to="grantedd" variable="granted" />
      <test assign_to="too_brief" variable="grantedd" compare="less_than" value="{min_expires}" />
    </action>
  </nop>
  <nop test="too_brief" next="{fail_label}" />
'''
    return s
def reject():
    return '''  <label id="rejected" />
''' + resp('403 Forbidden') + '''  <!-- Nothing may follow: the receive times out and the flow counts as failed. -->
  <recv request="ACK" timeout="200" />

'''
OK = resp('200 OK', '''Contact: <[$curi]>;expires=[$granted]
Expires: [$granted]
Date: Wed, 25 Nov 2026 12:00:00 GMT''')
def recv(actions):
    return f'''  <recv request="REGISTER">
    <action>
{actions}    </action>
  </recv>
'''
def scenario(fname, name, doc, body):
    xml = f'''<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">

<!--
{doc.rstrip()}

  Every reg_*.xml registrar serves ONE REGISTER flow and exits 0 iff it completed: run
    sipp -sf FILE -i 127.0.0.1 -p PORT -m 1 -timeout 30s -timeout_error -nostdin
         -set user AUTH_USER -set password PASSWORD
  The client must keep the Call-ID across the flow (SIPp ties the flow to it; RFC 3261 §10.2:
  a UA SHOULD keep it) and send a Contact and an expiry (Expires or Contact ;expires=), which
  the final 200 grants unchanged. A wrong digest gets 403 and the flow fails (exit code 1).
  (Generated from one template; keep the copies in step.)
-->

<scenario name="{name}">
  <Global variables="user,password" />
  <!-- SIPp rejects variables used fewer than twice; user/password are only needed where
       verifyauth runs, so reference them once here (the value goes nowhere). -->
  <nop hide="true">
    <action>
      <assignstr assign_to="_" value="[$user][$password]" />
    </action>
  </nop>

{body}</scenario>
'''
    open(OUT+fname,'w').write(xml)

N1='c0ffee01d1a1bac4'; N2='c0ffee02e2b2cad5'; OP='0f1e2d3c4b5a6978'
md5_401 = f'WWW-Authenticate: Digest realm="sipp.test", nonce="{N1}", opaque="{OP}", algorithm=MD5, qop="auth,auth-int"'

scenario('reg_qop_auth_authint.xml', 'registrar 401 qop auth,auth-int MD5 then 200',
'''  Registrar: 401 offering qop="auth,auth-int" with MD5, then 200.

  RFC 3261 §22.4, RFC 2617 §3.2.2: the retry must carry Authorization with our realm, nonce
  and opaque, a qop picked from the offered list, cnonce and nc, and an MD5 response over the
  right password (SIPp verifyauth checks it, auth-int included).''',
recv(CONTACT) + resp('401 Unauthorized', md5_401) + '\n' +
recv(creds('Authorization:', 'sipp.test', N1, OP, 'auth(-int)?') + CONTACT + EXPIRY + VERIFY) +
'''
  <nop test="authok" next="authorized" />
''' + reject() + '''  <label id="authorized" />
''' + grant() + '\n' + OK)

scenario('reg_sha256.xml', 'registrar 401 SHA-256 qop auth then 200',
'''  Registrar: 401 with algorithm=SHA-256, qop="auth" (RFC 7616 §3.3), then 200.

  The retry must carry Authorization with algorithm=SHA-256, our realm, nonce and opaque,
  qop=auth, cnonce, nc and a 64-hex-digit response. SIPp 3.6 cannot verify a SHA-256
  digest, so the response value itself is checked by the test from the message log
  (tests/support/digest.rs, SippOutcome::verify_digest).''',
recv(CONTACT) + resp('401 Unauthorized', f'WWW-Authenticate: Digest realm="sipp.test", nonce="{N1}", opaque="{OP}", algorithm=SHA-256, qop="auth"') + '\n' +
recv(creds('Authorization:', 'sipp.test', N1, OP, 'auth', 'SHA-256', 64) + CONTACT + EXPIRY) + '\n' +
grant() + OK + '''  <nop next="end" />

''' + reject() + '''  <label id="end" />
''')

scenario('reg_407.xml', 'registrar 407 proxy challenge MD5 then 200',
'''  Registrar behind an authenticating proxy: 407 with Proxy-Authenticate (MD5, qop="auth"),
  then 200.

  RFC 3261 §22.3: the retry must carry Proxy-Authorization (not Authorization) with our
  realm, nonce and opaque, qop=auth, cnonce, nc and a response. SIPp verifyauth only reads
  Authorization, so the response value is checked by the test from the message log
  (tests/support/digest.rs, SippOutcome::verify_digest).''',
recv(CONTACT) + resp('407 Proxy Authentication Required', f'Proxy-Authenticate: Digest realm="sipp.test", nonce="{N1}", opaque="{OP}", algorithm=MD5, qop="auth"') + '\n' +
recv(creds('Proxy-Authorization:', 'sipp.test', N1, OP, 'auth') + CONTACT + EXPIRY) + '\n' +
grant() + OK + '''  <nop next="end" />

''' + reject() + '''  <label id="end" />
''')

scenario('reg_stale.xml', 'registrar 401 then 401 stale=true then 200',
f'''  Registrar with nonce expiry: 401 (nonce 1), then, although the digest is right, 401 with
  stale=true and a new nonce, then 200.

  RFC 2617 §3.2.1 / RFC 7616 §3.3: stale=true means the credentials were good and only the
  nonce expired; the client must retry with the new nonce without treating it as a wrong
  password. Both retries are verified with SIPp verifyauth (MD5, qop="auth"); the last one
  must use nonce 2.''',
recv(CONTACT) + resp('401 Unauthorized', f'WWW-Authenticate: Digest realm="sipp.test", nonce="{N1}", opaque="{OP}", algorithm=MD5, qop="auth"') + '\n' +
recv(creds('Authorization:', 'sipp.test', N1, OP, 'auth') + CONTACT + VERIFY) + '''
  <nop test="authok" next="first_ok" />
  <nop next="rejected" />
  <label id="first_ok" />
''' + resp('401 Unauthorized', f'WWW-Authenticate: Digest realm="sipp.test", nonce="{N2}", opaque="{OP}", algorithm=MD5, qop="auth", stale=true') + '\n' +
recv(creds('Authorization:', 'sipp.test', N2, OP, 'auth') + CONTACT + EXPIRY + VERIFY) + '''
  <nop test="authok" next="authorized" />
''' + reject() + '''  <label id="authorized" />
''' + grant() + '\n' + OK)

scenario('reg_423.xml', 'registrar 423 Min-Expires 120 then 401 then 200',
'''  Registrar with a minimum expiry: 423 Interval Too Brief with Min-Expires: 120, then 401
  (MD5, qop="auth"), then 200 only if the expiry asked for is at least 120 s.

  RFC 3261 §10.2.8 / §10.3 step 7: after a 423 the client must retry with an expiry of at
  least Min-Expires. Both later REGISTERs are checked for that; the authenticated one is
  verified with SIPp verifyauth.''',
recv(CONTACT + EXPIRY) + resp('423 Interval Too Brief', 'Min-Expires: 120') + '\n' +
recv(CONTACT + EXPIRY) + grant(120, tag='_1') + '\n' +
resp('401 Unauthorized', f'WWW-Authenticate: Digest realm="sipp.test", nonce="{N1}", opaque="{OP}", algorithm=MD5, qop="auth"') + '\n' +
recv(creds('Authorization:', 'sipp.test', N1, OP, 'auth') + CONTACT + EXPIRY + VERIFY) + '''
  <nop test="authok" next="authorized" />
''' + reject() + '''  <label id="authorized" />
''' + grant(120, tag='_2') + '\n' + OK)
