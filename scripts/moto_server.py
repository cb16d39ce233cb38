"""Launch a moto server (S3, STS, IAM) for the integration tests.

Usage: .venv/bin/python scripts/moto_server.py --port PORT [--host HOST] [--iam]

With --iam (and INITIAL_NO_AUTH_ACTION_COUNT set by scripts/services), moto enforces IAM on
every request. Two changes bring it closer to AWS for AssumeRoleWithWebIdentity:
- AWS treats that call as public (the web identity token is the credential), but moto 5 checks
  a signature on every action once enforcement starts, so the SDK's unsigned call would get a
  500. It is exempted from the signature check here.
- moto never evaluates role trust policies. Here the role's trust policy is checked against the
  token's claims (StringEquals / StringLike on `<issuer>:sub` and `<issuer>:aud`) and an
  expired token is refused, so tests see AWS's AccessDenied / ExpiredTokenException for real.
- moto checks DeleteObjects once against the bucket ARN; AWS checks s3:DeleteObject on each key.
"""

import argparse
import base64
import fnmatch
import json
import time
import urllib.parse

from moto import server


def _claims(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def _allows(statement, claims):
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    if statement.get("Effect") != "Allow" or "sts:AssumeRoleWithWebIdentity" not in actions:
        return False
    issuer = claims.get("iss", "").removeprefix("https://")
    for operator, conditions in statement.get("Condition", {}).items():
        for key, expected in conditions.items():
            claim_issuer, _, claim = key.partition(":")
            if claim_issuer != issuer:
                return False
            values = claims.get(claim)
            values = values if isinstance(values, list) else [values]
            expected = [expected] if isinstance(expected, str) else expected
            if operator == "StringEquals":
                ok = any(v in expected for v in values)
            elif operator == "StringLike":
                ok = any(fnmatch.fnmatchcase(str(v), e) for v in values for e in expected)
            else:
                return False
            if not ok:
                return False
    return True


def _enable_web_identity_realism():
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.models import iam_backends
    from moto.sts.exceptions import STSClientError
    from moto.sts.responses import TokenResponse

    authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authorize_except_public(self, iam_request_cls, resource="*"):
        if self._get_action() == "AssumeRoleWithWebIdentity":
            return None
        return authorize(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize_except_public

    assume = TokenResponse.assume_role_with_web_identity

    def assume_checking_trust(self):
        claims = _claims(self._get_param("WebIdentityToken"))
        if claims.get("exp", 0) < time.time():
            raise STSClientError("ExpiredTokenException", "Token expired")
        iam = iam_backends[self.current_account][self.partition]
        role = iam.get_role_by_arn(self._get_param("RoleArn"))
        policy = json.loads(urllib.parse.unquote(role.assume_role_policy_document))
        if not any(_allows(s, claims) for s in policy.get("Statement", [])):
            raise STSClientError("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
        return assume(self)

    TokenResponse.assume_role_with_web_identity = assume_checking_trust


def _authorize_delete_objects_per_key():
    """AWS authorizes DeleteObjects as s3:DeleteObject on each key's ARN; moto 5 checks it once
    against the bucket's ARN, so a policy scoped to `bucket/prefix*` (the least privilege
    `pg-s3-backup policy` prints) could never delete. Check every key instead."""
    import xmltodict
    from moto.s3.responses import S3Response

    authorize = S3Response._authenticate_and_authorize_s3_action

    def per_key(self, bucket_name=None, key_name=None):
        if key_name is None and self.data.get("Action") == "DeleteObject" and self.is_delete_keys():
            objects = xmltodict.parse(self.body)["Delete"].get("Object", [])
            for obj in objects if isinstance(objects, list) else [objects]:
                authorize(self, bucket_name=bucket_name, key_name=obj["Key"])
            return None
        return authorize(self, bucket_name=bucket_name, key_name=key_name)

    S3Response._authenticate_and_authorize_s3_action = per_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--iam", action="store_true", help="AWS-like web identity checks")
    args = parser.parse_args()
    if args.iam:
        _enable_web_identity_realism()
        _authorize_delete_objects_per_key()
    server.main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
