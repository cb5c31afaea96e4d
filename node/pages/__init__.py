"""The pages people use (zh-CN, server-rendered with Jinja2, a little JavaScript where it helps).

- ``session``: staff sign in with the login form; the node's staff JWT rides in an HttpOnly,
  SameSite=Strict cookie; state-changing requests also carry a CSRF token derived from it.
- ``rendering``: the Jinja2 environment, filters and the ``render`` helper.
- One module per audience: ``window`` (收件, clerk), ``office`` (办理, approver/inspector),
  ``supervision`` (监督), ``citizen`` (public, no login).
"""
